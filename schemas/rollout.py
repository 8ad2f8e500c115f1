"""Rollout policy of a Cluster: how a new revision reaches its nodes, one turn at a time.

    spec:
      rollout:
        order: [lb1, lb2]          # default: nodes that serve nothing first, then the VIP holders
        maxUnavailable: 1          # nodes that may be out of service at once (default 1)
        healthGate:
          timeout: 60s             # how long a node may take to be Healthy after its change
          probes:                  # optional, beside the health reconcile reports
            - {type: http, port: 80, path: /}           # on the node's own address
            - {type: tcp, address: 192.0.2.100, port: 80}
        soak: 10s                  # Healthy and in service this long before the next node goes
        onFailure: halt            # halt | rollback (re-apply the node's last good revision)
        turnTimeout: 30s           # a turn whose agent went silent this long is released

The agents coordinate through the cluster's Pacemaker (reconcilers/pacemaker/rollout.py),
so a rollout policy needs `stack: pacemaker`: a group of nodes without Corosync has no
engine to coordinate through, and reconcile invents no protocol of its own.
"""
from typing import Annotated, Literal

from pydantic import Field

from schemas.common import Duration, IPAddress, NodeName, Port, Strict, UrlPath, duplicates, duration_ms


class Probe(Strict):
    """One check a node must pass before its turn ends: a TCP connect or an HTTP GET."""

    type: Literal["http", "tcp"] = Field(description="http: a GET that must answer with expectStatus; tcp: a connect")
    address: IPAddress | None = Field(
        None, description="where to connect (e.g. the VIP); default: the node's own address from spec.nodes")
    port: Port = Field(description="TCP port")
    path: UrlPath = Field("/", description="HTTP path (http only)")
    expectStatus: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)] | None = Field(
        None, description="HTTP status codes that pass (default: any 2xx or 3xx)")
    timeout: Duration = Field("2s", description="how long one probe may take")


class HealthGate(Strict):
    """What "the node works" means after its change: every object and node facet Healthy
    (as `reconcile status` reports it; a drain the rollout made is not held against it),
    and every probe passing, within `timeout`."""

    timeout: Duration = Field("60s", description="how long a node may take to pass the gate after its change")
    probes: list[Probe] = Field(default_factory=list, description="HTTP/TCP probes that must pass too")


class RolloutPolicy(Strict):
    """How a new revision reaches the Cluster's nodes: in `order`, at most `maxUnavailable`
    at a time, each drained (unless every change is hitless, or an HAProxy reload a peer
    already passed its gate with: controller/rollout.py), changed, health-gated, undrained
    and soaked before the next."""

    order: list[NodeName] | None = Field(None, description="the nodes' order, every node of the cluster once "
                                                           "(default: the nodes that serve nothing — no VIP, no "
                                                           "Pacemaker resource — first, then those that serve, each "
                                                           "in spec.nodes' order)")
    maxUnavailable: Annotated[int, Field(ge=1, le=64)] = Field(
        1, description="how many nodes may be out of service (drained, changing, failed) at once")
    healthGate: HealthGate = Field(default_factory=HealthGate, description="what a node must pass after its change")
    soak: Duration = Field("0s", description="how long a node stays Healthy in service before the next one goes")
    onFailure: Literal["halt", "rollback"] = Field(
        "halt", description="halt: stop the rollout, leave the failed node drained; rollback: also re-apply "
                            "the node's last good revision there (the rollout stays halted)")
    turnTimeout: Duration = Field("30s", description="a turn whose agent has not been heard of for this long "
                                                     "(or whose node left the cluster) is released")

    def problems(self, nodes: list[str], stack: str) -> list[tuple[str, str]]:
        """Problems of this policy in a cluster of `nodes` (spec.nodes' names)."""
        out: list[tuple[str, str]] = []
        if stack != "pacemaker":
            out.append(("spec.rollout", "a rollout needs stack: pacemaker: the agents take turns through "
                        "Pacemaker's CIB; a group of nodes without Corosync has nothing to coordinate through"))
        if self.order is not None:
            out += duplicates(self.order, "spec.rollout.order.{}", "node")
            for i, n in enumerate(self.order):
                if n not in nodes:
                    out.append((f"spec.rollout.order.{i}", f"node {n!r} is not in this cluster"))
            missing = [n for n in nodes if n not in self.order]
            if missing:
                out.append(("spec.rollout.order", f"names every node once; missing: {', '.join(missing)}"))
        if self.maxUnavailable >= len(nodes) and len(nodes) > 1:
            out.append(("spec.rollout.maxUnavailable", f"{self.maxUnavailable} of {len(nodes)} nodes would let a "
                        "rollout take the whole cluster down: at most " + str(len(nodes) - 1)))
        if duration_ms(self.turnTimeout) < 3000:
            out.append(("spec.rollout.turnTimeout", "at least 3s: an agent's heartbeat comes every second"))
        for i, p in enumerate(self.healthGate.probes):
            if p.type == "tcp" and (p.path != "/" or p.expectStatus is not None):
                out.append((f"spec.rollout.healthGate.probes.{i}", "path and expectStatus are for http probes"))
        return out
