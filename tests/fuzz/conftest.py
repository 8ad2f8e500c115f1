"""Every unit test runs hermetic: see tests/hermetic.py."""
from tests.hermetic import hermetic  # noqa: F401
