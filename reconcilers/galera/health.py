"""Whether this node's Galera member works (pure judgement of `SHOW GLOBAL STATUS`).

Sync says the option file matches git; health says the node is a Synced member of a
Primary component of the expected size. One read-only client call per plan.
"""
from __future__ import annotations

from reconcilers.base import Health
from reconcilers.galera.status import parse

STATUS_ARGV = ["mariadb", "-N", "-B", "--connect-timeout=2", "-e", "SHOW GLOBAL STATUS LIKE 'wsrep_%'"]


def judge(status: dict[str, str], members: int) -> Health:
    """Healthy: Synced, Primary, all `members` in the component. Degraded otherwise, with
    the reason an operator acts on."""
    if not status or status.get("wsrep_on", "ON") == "OFF" or "wsrep_cluster_status" not in status:
        return Health.degraded("NotAMember", "mysqld runs without wsrep (not started by the galera agent?)")
    size = status.get("wsrep_cluster_size", "0")
    state = status.get("wsrep_local_state_comment", "unknown")
    if status["wsrep_cluster_status"] != "Primary":
        return Health.degraded("NonPrimary", f"in a non-Primary component of {size}: it refuses queries")
    if state != "Synced":
        return Health.degraded(state.split("/")[0].replace(" ", ""), f"{state} (not serving the read pool)")
    if size != str(members):
        return Health.degraded("MembersMissing", f"Synced in a Primary component of {size} of {members} nodes")
    return Health.healthy("Synced", f"Synced in a Primary component of {size}")


def read(output: str) -> dict[str, str]:
    return parse(output)
