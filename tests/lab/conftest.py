"""Lab fixtures: each test gets fresh, uniquely named lab nodes, torn down even when it fails.

    @pytest.mark.lab
    def test_something(lab2):            # lb1, lb2
        lab2.exec("lb1", ["ping", "-c1", lab2.address("lb2")])
        reconcile(lab2, "lb1", "--dry-run", "--repo", str(lab2.shared / "repo"))

`lab3` has lb1..lb3, `lab2_dc` adds dc1 (Samba AD DC, see controller.lab for the domain,
users and passwords), `lab2_systemd` has lb1, lb2 booting a real systemd (about 1 s),
`make_lab(nodes=1, domain_controller=False, systemd=False, sftp=False)` builds other shapes
(sftp: an SFTP server in the last lb node, controller/lab/sftp.py).
The API is documented in controller/lab/__init__.py.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import pytest

from controller.lab import Lab, reconcile, sweep_orphans, temporary_lab  # noqa: F401  (re-exported)


@pytest.fixture(scope="session", autouse=True)
def _sweep_labs_of_killed_runs() -> None:
    """Labs left by a killed test run (owner process gone) are removed before we start."""
    sweep_orphans()


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """Factory: make_lab(nodes=2, domain_controller=False, systemd=False, sftp=False) -> Lab,
    all torn down after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda nodes=2, domain_controller=False, systemd=False, sftp=False: stack.enter_context(
            temporary_lab(nodes=nodes, domain_controller=domain_controller, systemd=systemd, sftp=sftp))


@pytest.fixture
def lab2() -> Iterator[Lab]:
    with temporary_lab(nodes=2) as lab:
        yield lab


@pytest.fixture
def lab3() -> Iterator[Lab]:
    with temporary_lab(nodes=3) as lab:
        yield lab


@pytest.fixture
def lab2_dc() -> Iterator[Lab]:
    with temporary_lab(nodes=2, domain_controller=True) as lab:
        yield lab


@pytest.fixture
def lab2_systemd() -> Iterator[Lab]:
    """lb1, lb2 booting systemd as PID 1, with the Debian packages' services as installed."""
    with temporary_lab(nodes=2, systemd=True) as lab:
        yield lab
