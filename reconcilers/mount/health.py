"""Whether a Mount works, from what observe saw (no command of its own).

A mount in sync is not necessarily usable: a FUSE daemon killed since the last run leaves
its mount in the table, and only `stat` (observe's probe) tells it is dead. Health answers
"can the node read this path as git says" from the same observation:

  Mounted                 mounted, its point answers `stat`          Healthy
  NotMounted (absent)     nothing of ours there, as git says         Healthy
  NotMounted              git says mounted, nothing is               Degraded
  TransportDisconnected   the FUSE daemon is gone (ENOTCONN)         Degraded
  NotResponding           `stat` hung: the server or daemon hangs    Degraded
  Foreign                 a mount reconcile did not make is there    Degraded
"""
from __future__ import annotations

from typing import Any

from reconcilers.base import Health


def mount_health(want: dict[str, Any], seen: dict[str, Any] | None) -> Health:
    """Health of one Mount: `want` is its desired state, `seen` what observe reported."""
    path = want["path"]
    if want["state"] == "absent":
        if seen is not None and seen.get("state") not in (None, "absent", "foreign"):
            return Health.degraded("StillMounted", f"{path} is still mounted; git says absent")
        return Health.healthy("NotMounted", f"nothing of reconcile's on {path}, as git says")
    if seen is None or seen.get("state") == "absent":
        return Health.degraded("NotMounted", f"{path} is not mounted")
    state = seen.get("state")
    if state == "dead":
        return Health.degraded("TransportDisconnected",
                               f"{path}: the {seen.get('type', 'FUSE')} daemon is gone (transport endpoint "
                               "is not connected); the next run mounts it again")
    if state == "not-responding":
        return Health.degraded("NotResponding", f"{path} did not answer stat: its server or daemon hangs")
    if state == "foreign":
        return Health.degraded("Foreign", f"{path} holds a mount reconcile did not make "
                                          f"({seen.get('type')} {seen.get('source')}); it is left alone")
    mode = "read-only" if seen.get("readOnly") else "read-write"
    return Health.healthy("Mounted", f"{seen.get('type', want.get('type'))} {seen.get('source', '')} "
                                     f"on {path}, {mode}".replace("  ", " "))
