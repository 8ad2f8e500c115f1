"""A rollout across three nodes (lb1..lb3, agents following one repository, keepalived's
VIP on lb1 by priority, HAProxy; a client in lb4 sends HTTP through the VIP all along, a
new connection each, no retries), on one lab:

1. a wrong commit under `onFailure: rollback` with the order written lb1 first: lb1 (the
   VIP holder) drains, fails its gate, puts its last good revision back, passes the gate
   with it and returns to service; the rollout stays halted and names lb1; lb2 and lb3
   never change;
2. a good structural HAProxy change (the balance algorithm: a reload) with no order
   written: the nodes that serve nothing go first (lb2 drained — it moves nothing — then
   lb3 in place, proven on lb2), the VIP holder lb1 last and in place: the VIP never
   moves and the client sees 0 failed requests;
3. maxUnavailable 2 with HTTP and TCP probes through the VIP: lb2 and lb3 hold the turn
   together, lb1 after them, never three at once, 0 failed requests;
4. a probe through the VIP that cannot pass (a port nothing listens on) fails the first
   node's gate and halts the rollout with the probe's words; the VIP stays on lb1.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.lab.test_rollout import Fleet, bootstrap, running_fleet, wait_for

pytestmark = pytest.mark.lab
MEMBERS = ["lb1", "lb2", "lb3"]
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(MEMBERS, "rt") as f:
        yield f


class Turns:
    """Samples the rollout's holders and phases in the background: who held the turn, in
    which order, and whether two ever held it at once."""

    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.order: list[str] = []
        self.overlap: list[Any] = []
        self.timeline: list[tuple[float, str]] = []  # (time, "lb1 draining, VIP on lb2"), on each change
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            data = self.fleet.cluster("lb1")
            busy = [n for n, i in (data.get("nodes") or {}).items()
                    if i.get("phase") in ("draining", "applying", "gating", "soaking")]
            if len(busy) > 1 or len(data.get("holders") or []) > 1:
                self.overlap.append((busy, data.get("holders")))
            line = ", ".join(f"{n} {i.get('phase')}" for n, i in sorted((data.get("nodes") or {}).items())) + \
                f"; VIP on {self.fleet.holder()}"
            if not self.timeline or self.timeline[-1][1] != line:
                self.timeline.append((time.time(), line))
            for h in data.get("holders") or []:
                if not self.order or self.order[-1] != h:
                    self.order.append(h)
            time.sleep(0.2)

    def done(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_three_nodes_form_the_cluster_from_the_first_commit(fleet):
    bootstrap(fleet, FIGURES)


def test_a_failed_gate_under_rollback_puts_lb1_back_on_its_last_good_revision(fleet):
    good = fleet.agent("lb1")["revision"]
    pushed = time.monotonic()
    wrong = fleet.commit(8099, False, "a backend port nothing listens on", on_failure="rollback")
    data = wait_for(lambda: fleet.cluster_in("Stalled"), 90, "the rollout to halt", fleet.logs_text)
    FIGURES["time to halt"] = round(time.monotonic() - pushed, 1)
    assert data["failedNode"] == "lb1" and data["revision"] == wrong
    # lb1 comes back on the good revision, in service, and takes the VIP back
    wait_for(lambda: (fleet.cluster().get("nodes", {}).get("lb1") or {}).get("phase") == "idle", 60,
             "lb1 to be back in service", fleet.logs_text)
    wait_for(lambda: fleet.holder() == "lb1", 15, "the VIP back on lb1")
    FIGURES["halt and rollback"] = round(time.monotonic() - pushed, 1)
    nodes = fleet.cluster()["nodes"]
    assert {n: i["revision"] for n, i in nodes.items()} == {n: good for n in MEMBERS}, nodes
    assert all(":8080" in fleet.lab.read_file(n, "/etc/haproxy/haproxy.cfg") for n in MEMBERS)
    rollout = fleet.agent("lb1").get("rollout") or {}
    assert rollout.get("message", "").startswith(f"rolled back to {good[:12]}"), rollout
    assert fleet.cluster()["state"] == "Stalled"  # still halted: the bad revision goes nowhere
    fleet.check_failures(FIGURES, "after the rollback")


def turn_figures(fleet: Fleet, n: str) -> dict[str, Any]:
    rollout = fleet.agent(n).get("rollout") or {}
    return dict(rollout.get("figures") or {}, how=rollout.get("how"))


def test_a_structural_change_goes_to_the_vip_holder_last_in_place_and_fails_no_request(fleet):
    turns = Turns(fleet)
    since = time.time()
    pushed = time.monotonic()
    change = fleet.commit(8080, False, "leastconn (a reload everywhere)", balance="leastconn", order=None)
    try:
        for n in MEMBERS:
            wait_for(lambda n=n: fleet.at(n, change), 150, f"{n} to apply the change", fleet.logs_text)
        wait_for(lambda: fleet.cluster_in("Complete"), 30, "the rollout to complete", fleet.logs_text)
    finally:
        turns.done()
    FIGURES["3-node rollout"] = round(time.monotonic() - pushed, 1)
    assert turns.order == ["lb2", "lb3", "lb1"], turns.order  # the VIP holder last
    assert not turns.overlap, turns.overlap
    for n in MEMBERS:
        assert "balance leastconn" in fleet.lab.read_file(n, "/etc/haproxy/haproxy.cfg")
        FIGURES[f"{n} turn"] = turn_figures(fleet, n)
    assert FIGURES["lb2 turn"]["how"].startswith("drained first"), FIGURES["lb2 turn"]  # the first: untried
    for n in ("lb3", "lb1"):
        assert FIGURES[f"{n} turn"]["how"].startswith("in place"), FIGURES[f"{n} turn"]
    assert "proven on" in FIGURES["lb1 turn"]["how"] and "drain" not in FIGURES["lb1 turn"]
    assert fleet.holder() == "lb1"
    print("timeline:\n" + "\n".join(f"{t:.2f} {line}" for t, line in turns.timeline))
    fleet.check_failures(FIGURES, "structural change", since)
    assert FIGURES["VIP moves (structural change)"] == 0 and FIGURES["failed requests (structural change)"] == 0


VIP_PROBES = "[{type: http, address: 192.0.2.100, port: 80, path: /, expectStatus: [200]}, " \
             "{type: tcp, address: 192.0.2.100, port: 80}]"


def test_max_unavailable_two_changes_two_nodes_at_once_gated_by_probes_through_the_vip(fleet):
    turns = Turns(fleet)
    since = time.time()
    pushed = time.monotonic()
    change = fleet.commit(8080, False, "roundrobin again, two at a time", order=None, max_unavailable=2,
                          probes=VIP_PROBES)
    try:
        for n in MEMBERS:
            wait_for(lambda n=n: fleet.at(n, change), 150, f"{n} to apply the change", fleet.logs_text)
        wait_for(lambda: fleet.cluster_in("Complete"), 30, "the rollout to complete", fleet.logs_text)
    finally:
        turns.done()
    FIGURES["3-node rollout, maxUnavailable 2"] = round(time.monotonic() - pushed, 1)
    together = [o for o in turns.overlap if sorted(o[1] or []) == ["lb2", "lb3"]]
    assert together, (turns.overlap, turns.timeline)  # the two that serve nothing, at once
    assert not [o for o in turns.overlap if len(o[0]) > 2 or len(o[1] or []) > 2], turns.overlap
    assert turns.order[-1] == "lb1", turns.order
    for n in MEMBERS:
        assert "balance roundrobin" in fleet.lab.read_file(n, "/etc/haproxy/haproxy.cfg")
        FIGURES[f"{n} turn (maxUnavailable 2)"] = turn_figures(fleet, n)
    print("timeline:\n" + "\n".join(f"{t:.2f} {line}" for t, line in turns.timeline))
    fleet.check_failures(FIGURES, "maxUnavailable 2", since)
    assert FIGURES["failed requests (maxUnavailable 2)"] == 0


def test_a_probe_through_the_vip_that_fails_halts_the_rollout_at_the_first_node(fleet):
    since = time.time()
    pushed = time.monotonic()
    before = fleet.agent("lb1")["revision"]
    wrong = fleet.commit(8080, False, "source balance, and a probe of a port the VIP does not serve",
                         balance="source", order=None, gate_timeout="4s",
                         probes="[{type: tcp, address: 192.0.2.100, port: 81, timeout: 500ms}]")
    data = wait_for(lambda: fleet.cluster_in("Stalled"), 60, "the rollout to halt", fleet.logs_text)
    FIGURES["time to halt (VIP probe)"] = round(time.monotonic() - pushed, 1)
    assert data["revision"] == wrong and data["failedNode"] == "lb2", data
    assert "tcp 192.0.2.100:81" in data["message"], data["message"]
    time.sleep(2)
    assert fleet.agent("lb1")["revision"] == before and fleet.agent("lb3")["revision"] == before
    assert "balance source" not in fleet.lab.read_file("lb1", "/etc/haproxy/haproxy.cfg")
    assert fleet.holder() == "lb1"
    counts = fleet.stop_client()
    FIGURES["requests"] = counts["ok"] + counts["failed"]
    FIGURES["failures"] = counts["failures"]
    print("three-node rollout figures:", json.dumps(FIGURES, indent=1))
    fleet.check_failures(FIGURES, "VIP probe", since)
    assert FIGURES["failed requests (VIP probe)"] == 0
    fleet.check_failures(FIGURES, "in total")
