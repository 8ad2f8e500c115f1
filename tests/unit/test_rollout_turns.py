"""Rollout turns: what the CIB says (recorded from Pacemaker 2.1.5 in a lab node), who may
take a turn, the compare-and-set's patch and Pacemaker's refusal of a stale one, released
turns of silent agents, and the operator's view (`reconcile status --cluster`)."""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

from controller.rollout import Staleness, decide, halted, released
from controller.rollout_view import render_cluster, summarize
from reconcilers.base import CommandError
from reconcilers.pacemaker.cluster_cib import parse_cluster_config, write_properties
from reconcilers.pacemaker.rollout import is_conflict, parse_view, with_turn
from reconcilers.pacemaker.tools import parse_xml

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pacemaker_rollout"
POLICY = {"order": ["lb1", "lb2", "lb3"], "maxUnavailable": 1}
R = "1111111111111111111111111111111111111111"
OLD = "0000000000000000000000000000000000000000"


def recorded() -> ET.Element:
    return parse_xml((FIXTURES / "cib-turn-lb1.xml").read_text())


def node(revision: str = OLD, phase: str = "idle", health: str = "Healthy", online: bool = True) -> dict:
    return {"online": online, "revision": revision, "phase": phase, "health": health, "heartbeat": ""}


def view(turn: dict | None = None, **nodes: dict) -> dict:
    base = {"revision": "", "state": "", "holders": [], "failed": "", "reason": "", "since": ""}
    return {"turn": {**base, **(turn or {})}, "nodes": nodes}


# --- what the CIB says -----------------------------------------------------------------------


def test_the_recorded_cib_reads_as_the_turn_and_every_nodes_published_facts():
    v = parse_view(recorded())
    assert v["version"] == (0, 18, 0)  # (admin_epoch, epoch, num_updates)
    assert v["turn"]["revision"] == "rev3" and v["turn"]["state"] == "Progressing" and v["turn"]["holders"] == []
    assert v["nodes"]["lb1"] == {"online": True, "revision": "0123456789abcdef0123456789abcdef01234567",
                                 "health": "Healthy", "phase": "soaking", "heartbeat": "1795892000", "serving": "",
                                 "proven": ""}
    assert v["nodes"]["lb2"]["phase"] == "idle" and v["nodes"]["lb2"]["online"] is True


def test_a_turn_written_into_the_cib_reads_back_the_same_and_leaves_the_rest_alone():
    cib = recorded()
    turn = {"revision": R, "state": "Halted", "holders": ["lb2", "lb3"], "failed": "lb1",
            "reason": "not healthy after 12s:\nBackend app: Degraded", "since": "1795807179"}
    out = with_turn(cib, turn)
    back = parse_view(out)["turn"]
    assert back == dict(turn, reason="not healthy after 12s: Backend app: Degraded")  # one line
    assert out.find("configuration/crm_config/cluster_property_set[@id='cib-bootstrap-options']") is not None
    assert len(out.findall("configuration/crm_config/cluster_property_set[@id='reconcile-rollout']")) == 1
    assert ET.tostring(out.find("status")) == ET.tostring(cib.find("status"))
    assert parse_view(cib)["turn"]["revision"] == "rev3"  # the live copy is not edited


def test_the_cluster_reconciler_neither_shows_nor_removes_the_rollout_set():
    cib = recorded()
    configuration = cib.find("configuration")
    state = parse_cluster_config(configuration, {"properties": {"no-quorum-policy": "stop"}})
    assert not any("reconcile-rollout" in name for name in state["properties"]), state["properties"]
    crm_config = copy.deepcopy(configuration.find("crm_config"))
    write_properties(crm_config, {"no-quorum-policy": "ignore"}, None)
    kept = crm_config.find("cluster_property_set[@id='reconcile-rollout']")
    assert kept is not None and len(kept.findall("nvpair")) == len(
        configuration.findall("crm_config/cluster_property_set[@id='reconcile-rollout']/nvpair"))


def test_the_recorded_patch_names_the_version_it_was_computed_against():
    patch = ET.fromstring((FIXTURES / "patch-holders-lb2.xml").read_text())
    source = patch.find("version/source")
    cib = recorded()
    assert (source.get("admin_epoch"), source.get("epoch"), source.get("num_updates")) == (
        cib.get("admin_epoch"), cib.get("epoch"), cib.get("num_updates"))
    assert int(patch.find("version/target").get("epoch")) == int(cib.get("epoch")) + 1


def test_pacemakers_refusal_of_a_stale_patch_is_a_conflict_and_other_failures_are_not():
    rc = int((FIXTURES / "patch-conflict.rc").read_text())
    stderr = (FIXTURES / "patch-conflict.stderr").read_text()
    assert is_conflict(CommandError(["cibadmin", "--patch"], rc, stderr))
    assert not is_conflict(CommandError(["cibadmin", "--patch"], 102, "Could not connect to the CIB: "
                                                                      "Transport endpoint is not connected"))
    assert not is_conflict(CommandError(["cibadmin", "--patch"], None, ""))  # timed out


# --- who goes -----------------------------------------------------------------------------


def test_the_first_node_in_the_order_goes_first():
    d = decide(POLICY, view(lb1=node(), lb2=node(), lb3=node()), "lb1", R)
    assert d.go and d.turn["holders"] == ["lb1"] and d.turn["revision"] == R and d.turn["state"] == "Progressing"
    d = decide(POLICY, view(lb1=node(), lb2=node(), lb3=node()), "lb2", R)
    assert not d.go and d.reason.startswith("waiting for lb1 (before lb2 in the order) to run 111111111111")


def test_the_next_node_goes_once_the_one_before_runs_the_revision_idle_and_not_degraded():
    holding = view({"revision": R, "state": "Progressing", "holders": ["lb1"]},
                   lb1=node(R, "soaking"), lb2=node(), lb3=node())
    assert not decide(POLICY, holding, "lb2", R).go
    after = view({"revision": R, "state": "Progressing"}, lb1=node(R), lb2=node(), lb3=node())
    assert decide(POLICY, after, "lb2", R).turn["holders"] == ["lb2"]
    sick = view({"revision": R, "state": "Progressing"}, lb1=node(R, health="Degraded"), lb2=node(), lb3=node())
    assert not decide(POLICY, sick, "lb2", R).go


def test_max_unavailable_counts_every_node_out_of_service():
    # lb3 is offline: with maxUnavailable 1 nobody else may go
    v = view(lb1=node(), lb2=node(), lb3=node(online=False))
    d = decide(POLICY, v, "lb1", R)
    assert not d.go and d.reason == "lb3 out of service: maxUnavailable 1 leaves no room for lb1"
    assert decide(dict(POLICY, maxUnavailable=2), v, "lb1", R).go
    # two in flight at once with maxUnavailable 2, not three
    two = dict(POLICY, maxUnavailable=2)
    v = view({"revision": R, "state": "Progressing", "holders": ["lb1"]}, lb1=node(phase="applying"), lb2=node(),
             lb3=node())
    d = decide(two, v, "lb2", R)
    assert d.go and d.turn["holders"] == ["lb1", "lb2"]
    v["turn"]["holders"] = ["lb1", "lb2"]
    v["nodes"]["lb2"] = node(phase="gating")
    assert not decide(two, v, "lb3", R).go


def test_a_halted_rollout_stops_every_node_until_the_next_revision():
    turn = halted({"revision": R, "state": "Progressing", "holders": ["lb1"]}, "lb1", R, "not healthy after 12s")
    assert turn["state"] == "Halted" and turn["failed"] == "lb1" and turn["holders"] == []
    v = view(turn, lb1=node(R, "failed", "Degraded"), lb2=node(), lb3=node())
    d = decide(POLICY, v, "lb2", R)
    assert not d.go and d.reason == ("the rollout of 111111111111 is halted: lb1 failed: not healthy after 12s")
    assert not decide(POLICY, v, "lb1", R).go  # the failed node does not try the same revision again
    fix = "2" * 40
    d = decide(POLICY, v, "lb1", fix)  # the fix: the failed node itself is the first to go
    assert d.go and d.turn == {**d.turn, "revision": fix, "state": "Progressing", "holders": ["lb1"], "failed": ""}
    assert not decide(POLICY, v, "lb2", fix).go


def test_an_agent_that_restarts_in_its_turn_carries_on_and_a_released_turn_frees_the_slot():
    v = view({"revision": R, "state": "Progressing", "holders": ["lb1"]}, lb1=node(phase="applying"), lb2=node(),
             lb3=node())
    assert decide(POLICY, v, "lb1", R).go
    assert released(v["turn"], "lb1")["holders"] == []


def test_a_silent_holder_loses_its_turn_after_the_timeout_on_the_waiters_clock():
    now = [100.0]
    watch = Staleness(10.0, clock=lambda: now[0])
    v = view({"revision": R, "state": "Progressing", "holders": ["lb1"]},
             lb1=dict(node(R, "soaking"), heartbeat="5"), lb2=node(), lb3=node())
    assert watch.stale(v, "lb2") == set()
    now[0] = 109.0
    assert watch.stale(v, "lb2") == set()
    v["nodes"]["lb1"]["heartbeat"] = "6"  # it beat: the clock starts again
    now[0] = 118.0
    assert watch.stale(v, "lb2") == set()
    now[0] = 127.0
    assert watch.stale(v, "lb2") == set()
    now[0] = 128.5
    stale = watch.stale(v, "lb2")
    assert stale == {"lb1"}
    # soaking (in service, Healthy) when it went silent: lb2 may take over
    assert not decide(POLICY, v, "lb2", R).go
    d = decide(POLICY, v, "lb2", R, stale)
    assert d.go and d.turn["holders"] == ["lb2"]
    # silent while drained: its turn is released, but it still counts as out of service
    v["nodes"]["lb1"]["phase"] = "applying"
    assert not decide(POLICY, v, "lb2", R, stale).go


def test_a_holder_that_left_the_cluster_is_stale_at_once():
    watch = Staleness(30.0, clock=lambda: 0.0)
    v = view({"holders": ["lb1"]}, lb1=node(online=False), lb2=node())
    assert watch.stale(v, "lb2") == {"lb1"}


# --- reconcile status --cluster ---------------------------------------------------------------


def test_status_shows_a_halted_rollout_as_stalled_with_the_failed_node_and_the_reason():
    v = view({"revision": R, "state": "Halted", "failed": "lb1", "reason": "not healthy after 12s: Backend app: "
                                                                            "Degraded (NoServerUp)"},
             lb1=node(R, "failed", "Degraded"), lb2=dict(node(OLD, "waiting"), serving="keepalived: VI_1 holds x"))
    data = summarize(v)
    assert (data["state"], data["reason"], data["failedNode"]) == ("Stalled", "HealthGateFailed", "lb1")
    text = render_cluster(data)
    assert text.splitlines()[0] == ("Rollout 111111111111: Stalled (HealthGateFailed): lb1 failed its health gate: "
                                    "not healthy after 12s: Backend app: Degraded (NoServerUp)")
    assert "  failed node: lb1" in text
    assert any(line.split() == ["lb1", "yes", "111111111111", "Degraded", "failed", "no", "failed"] for line in
               text.splitlines()), text
    assert any(line.split() == ["lb2", "yes", "000000000000", "Healthy", "waiting", "yes"] for line in
               text.splitlines()), text


def test_status_says_progressing_while_a_node_holds_the_turn_and_complete_at_the_end():
    v = view({"revision": R, "state": "Progressing", "holders": ["lb2"]}, lb1=node(R), lb2=node(OLD, "gating"))
    data = summarize(v)
    assert (data["state"], data["reason"]) == ("Progressing", "InTurn")
    assert data["message"] == "in turn: lb2; not yet at 111111111111: lb2"
    assert "holds the turn" in next(line for line in render_cluster(data).splitlines() if line.strip().startswith("lb2"))
    done = summarize(view({"revision": R, "state": "Progressing"}, lb1=node(R), lb2=node(R)))
    assert (done["state"], done["message"]) == ("Complete", "every online node runs 111111111111")
    assert summarize(view(lb1=node()))["state"] == "None"


def test_metrics_say_the_phase_the_turns_and_the_last_turns_parts():
    from controller.metrics import AgentMetrics

    m = AgentMetrics()
    m.rollout("waiting")
    m.rollout("idle", "applied", {"drain": 2.1, "apply": 0.5, "gate": 3.8, "soak": 2.5, "turn": 9.4})
    text = m.text()
    assert 'reconcile_rollout_phase{phase="idle"} 1.0' in text
    assert 'reconcile_rollout_phase{phase="waiting"} 0.0' in text
    assert 'reconcile_rollout_turns_total{outcome="applied"} 1.0' in text
    assert 'reconcile_rollout_last_turn_seconds{part="gate"} 3.8' in text


def test_the_agents_status_shows_why_it_waits():
    from controller.status import render

    agent = {"node": "lb2", "ready": True, "reason": "ReconciliationSucceeded", "message": "applied", "pid": 1,
             "started": "x", "updated": "2026-11-27T19:00:00Z", "source": {}, "revision": OLD, "runs": 2,
             "driftEvents": 0, "nextResync": "x",
             "rollout": {"revision": R, "phase": "waiting", "waiting": "the rollout of 111111111111 is halted: lb1 "
                                                                      "failed: not healthy after 12s"}}
    text = render({"agent": agent, "lastRun": None, "running": True, "history": [], "stateDir": "/x"})
    assert "  rollout   waiting at 111111111111: the rollout of 111111111111 is halted: lb1 failed: not healthy " \
           "after 12s" in text.splitlines()
