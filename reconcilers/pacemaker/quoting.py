"""One-line values for corosync.conf and the CIB (until the shared quoting helpers of
issue 22 land in reconcilers/base.py, which this module then re-exports)."""
from __future__ import annotations

import re

from reconcilers.base import ApplyError

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]")


class UnsafeValue(ApplyError):
    """A value that cannot be written into a generated file without changing what it says."""


def one_line(value: str, where: str, max_length: int = 1024) -> str:
    """`value` unchanged when it can stand inside one line of `where`; raises UnsafeValue."""
    found = _CONTROL.search(value)
    if found:
        raise UnsafeValue(f"{where}: refused to write {value!r}: it holds a control character or line break")
    if len(value) > max_length:
        raise UnsafeValue(f"{where}: refused to write a value of {len(value)} characters (at most {max_length})")
    return value
