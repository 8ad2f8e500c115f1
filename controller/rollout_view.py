"""`reconcile status --cluster`: the rollout of the cluster this node is in, as the
cluster's own store says it (the coordinator's view, see controller/rollout.py), from any
node, read-only: its condition (kstatus-style) and each node's published facts — revision,
health, phase, whether it serves (holds a VIP or runs a Pacemaker resource), its turn.
"""
from __future__ import annotations

from typing import Any

from reconcilers.base import ApplyError, CommandError, Node


def cluster_view(node: Node) -> dict[str, Any] | None:
    """The rollout state of the cluster this node is in, from any node (read-only)."""
    from reconcilers import installed

    for cls in installed():
        hook = getattr(cls, "rollout_view", None)
        if hook is None:
            continue
        try:
            view = hook(node)
        except (ApplyError, CommandError) as err:
            return {"error": str(err)}
        if view is not None:
            return summarize(view)
    return None


def summarize(view: dict[str, Any]) -> dict[str, Any]:
    """The rollout's condition (kstatus-style) from a view: Stalled when halted, Progressing
    while nodes still differ, Complete when every online node runs the revision."""
    turn, nodes = view["turn"], view["nodes"]
    rev = turn.get("revision") or ""
    behind = [n for n, i in sorted(nodes.items()) if i.get("online") and i.get("revision") != rev]
    if not rev:
        state, reason, message = "None", "NoRollout", "no rollout has started in this cluster"
    elif turn.get("state") == "Halted":
        state, reason = "Stalled", "HealthGateFailed"
        message = f"{turn.get('failed')} failed its health gate: {turn.get('reason')}"
    elif turn.get("holders") or behind:
        state, reason = "Progressing", "InTurn" if turn.get("holders") else "Waiting"
        message = (f"in turn: {', '.join(turn['holders'])}" if turn.get("holders") else "") + \
            (f"; not yet at {rev[:12]}: {', '.join(behind)}" if behind else "")
    else:
        state, reason, message = "Complete", "AllNodesUpdated", f"every online node runs {rev[:12]}"
    return {"revision": rev, "state": state, "reason": reason, "message": message.strip("; "),
            "failedNode": turn.get("failed") or None, "holders": turn.get("holders", []), "turn": turn,
            "nodes": nodes}


def render_cluster(data: dict[str, Any]) -> str:
    if data.get("error"):
        return f"Cluster rollout: unknown ({data['error']})"
    lines = [f"Rollout {str(data['revision'])[:12] or '-'}: {data['state']} ({data['reason']}): {data['message']}"]
    if data.get("failedNode"):
        lines.append(f"  failed node: {data['failedNode']}")
    lines.append(f"  {'NODE':10} {'ONLINE':6} {'REVISION':12} {'HEALTH':9} {'PHASE':9} {'SERVES':6} TURN")
    for name, info in sorted(data["nodes"].items()):
        turn = "holds the turn" if name in data["holders"] else ("failed" if name == data.get("failedNode") else "")
        lines.append(f"  {name:10} {'yes' if info.get('online') else 'no':6} {str(info.get('revision') or '-')[:12]:12} "
                     f"{info.get('health') or '-':9} {info.get('phase') or '-':9} "
                     f"{'yes' if info.get('serving') else 'no':6} {turn}".rstrip())
    return "\n".join(lines)
