"""Fault injection for the tests: kill this process (SIGKILL) right after a chosen step.

The fault-injection tests (tests/lab/test_faults*.py) prove that a run killed at any moment
leaves a node that the next run converges: nothing outside the inventory, no temp file, no
half-made object. They need to kill reconcile at exact places, not at a random time, so the
runner, the atomic writer, the state files and the engine name their steps here.

Two environment variables, read once per process; without them every call is a no-op:

``RECONCILE_FAULT_KILL=PATTERN[@N]``
    SIGKILL this process at the N-th step (default the first) whose name matches PATTERN
    (`fnmatch`, e.g. ``exec:lxc-create*``, ``write:/etc/haproxy/haproxy.cfg``,
    ``engine:owned*``), or at the N-th step of any name with PATTERN ``*``.
``RECONCILE_FAULT_TRACE=FILE``
    Append each step's name to FILE as it is reached (a run's list of steps, from which
    the randomized test picks where to kill).

Step names (only steps that may change the node or the state folder; reads are not steps):

- ``exec:ARGV0 ARGV1`` — a command not declared read-only has returned (its result not yet
  looked at);
- ``CHANNEL:DETAIL`` — just before a change through another channel (`Runner.guard`, e.g.
  HAProxy's runtime socket);
- ``temp:PATH`` — AtomicWriter wrote and synced the temp file, before the rename;
  ``write:PATH`` — right after the rename; ``remove:PATH`` — after a removal;
- ``state:FILE`` — a state file (inventory, status, history) was replaced;
- ``engine:owned KIND/NAME`` — the inventory recorded a create before it is applied;
  ``engine:applied LABEL`` — a reconciler's apply returned, its outcomes not yet recorded.
"""
from __future__ import annotations

import fnmatch
import os
import signal

_KILL = os.environ.get("RECONCILE_FAULT_KILL", "")
_TRACE = os.environ.get("RECONCILE_FAULT_TRACE", "")
_pattern, _, _nth = _KILL.rpartition("@") if "@" in _KILL else (_KILL, "", "1")
_left = int(_nth) if _nth.isdigit() and int(_nth) > 0 else 1
ACTIVE = bool(_KILL or _TRACE)


def step(name: str) -> None:
    """A named step was reached: trace it, and die here if the test chose this step."""
    global _left
    if not ACTIVE:
        return
    name = name.replace("\n", " ")
    if _TRACE:
        with open(_TRACE, "a") as f:
            f.write(name + "\n")
    if _pattern and fnmatch.fnmatchcase(name, _pattern):
        _left -= 1
        if _left == 0:
            if _TRACE:
                with open(_TRACE, "a") as f:
                    f.write(f"KILLED at {name}\n")
            os.kill(os.getpid(), signal.SIGKILL)
