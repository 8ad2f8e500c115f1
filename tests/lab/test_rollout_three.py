"""A rollout across three nodes (lb1..lb3, agents following one repository, keepalived's
VIP, HAProxy; a client in lb4 sends HTTP through the VIP all along, no retries):

1. a wrong commit under `onFailure: rollback`: lb1 fails its gate, puts its last good
   revision back, passes the gate with it and returns to service; the rollout stays
   halted and names lb1; lb2 and lb3 never change;
2. a good structural HAProxy change (the balance algorithm: a reload) goes lb1, lb2, lb3,
   never two at once, and the client sees no failed request (but, at most, the one in
   flight at an instant the VIP moved).
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


def test_a_structural_change_rolls_out_one_node_at_a_time_with_no_failed_request(fleet):
    turns = Turns(fleet)
    pushed = time.monotonic()
    change = fleet.commit(8080, False, "leastconn (a reload everywhere)", balance="leastconn")
    try:
        for n in MEMBERS:
            wait_for(lambda n=n: fleet.at(n, change), 150, f"{n} to apply the change", fleet.logs_text)
        wait_for(lambda: fleet.cluster_in("Complete"), 30, "the rollout to complete", fleet.logs_text)
    finally:
        turns.done()
    FIGURES["3-node rollout"] = round(time.monotonic() - pushed, 1)
    assert turns.order == MEMBERS, turns.order
    assert not turns.overlap, turns.overlap
    for n in MEMBERS:
        assert "balance leastconn" in fleet.lab.read_file(n, "/etc/haproxy/haproxy.cfg")
        FIGURES[f"{n} turn"] = (fleet.agent(n).get("rollout") or {}).get("figures")
    wait_for(lambda: fleet.holder() == "lb1", 15, "the VIP back on lb1")
    counts = fleet.stop_client()
    FIGURES["requests"] = counts["ok"] + counts["failed"]
    FIGURES["failures"] = counts["failures"]
    print("three-node rollout figures:", json.dumps(FIGURES, indent=1))
    print("timeline:\n" + "\n".join(f"{t:.2f} {line}" for t, line in turns.timeline))
    fleet.check_failures(FIGURES, "in total")
