"""Which turns drain and which change in place: the order (nodes that serve nothing first),
the proof a peer publishes and the holder checks, HAProxy's changes sorted into hitless,
unproven (a reload: in place once proven) and disruptive; what Pacemaker's CIB status says
runs on a node (recorded from Pacemaker 2.1.5 in a lab: a Dummy resource on lb1, lb1 put
in standby while it stops, then moved away), HAProxy's connections over old and new
workers (recorded from HAProxy 2.6 after a reload), and the probes of a health gate
against servers on loopback."""
from __future__ import annotations

import copy
import http.server
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.loader import load_tree
from controller.rollout import decide, digests, drain_reason, probe, proof, proven_on, turn_order
from reconcilers.base import Change, Node, Runner, Unproven
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.haproxy.runtime import all_workers, current_connections
from reconcilers.pacemaker.rollout import active_here, dc_name
from reconcilers.pacemaker.tools import parse_xml

FIXTURES = Path(__file__).parent.parent / "fixtures"
R = "1111111111111111111111111111111111111111"
OLD = "0000000000000000000000000000000000000000"
DEFAULT = {"order": ["lb1", "lb2", "lb3"], "servingLast": True, "maxUnavailable": 1}


def node(revision: str = OLD, phase: str = "idle", health: str = "Healthy", serving: str = "",
         proven: str = "") -> dict:
    return {"online": True, "revision": revision, "phase": phase, "health": health, "heartbeat": "",
            "serving": serving, "proven": proven}


def view(turn: dict | None = None, **nodes: dict) -> dict:
    base = {"revision": "", "state": "", "holders": [], "failed": "", "reason": "", "since": ""}
    return {"turn": {**base, **(turn or {})}, "nodes": nodes}


# --- the order ---------------------------------------------------------------------------------


def test_without_an_order_the_nodes_that_serve_go_last_and_a_written_order_is_followed():
    nodes = {"lb1": node(serving="keepalived: web-vip holds 192.0.2.100/24"), "lb2": node(), "lb3": node()}
    assert turn_order(DEFAULT, nodes) == ["lb2", "lb3", "lb1"]
    assert turn_order(dict(DEFAULT, servingLast=False), nodes) == ["lb1", "lb2", "lb3"]
    nothing = {n: node() for n in ("lb1", "lb2", "lb3")}
    assert turn_order(DEFAULT, nothing) == ["lb1", "lb2", "lb3"]


def test_the_vip_holder_waits_for_the_nodes_that_serve_nothing_which_go_first():
    v = view(lb1=node(serving="keepalived: web-vip holds 192.0.2.100/24"), lb2=node(), lb3=node())
    assert decide(DEFAULT, v, "lb2", R).go
    held = decide(DEFAULT, v, "lb1", R)
    assert not held.go and held.reason.startswith("waiting for lb2 (before lb1 in the order)")
    assert not decide(DEFAULT, v, "lb3", R).go  # after lb2
    v = view({"revision": R, "state": "Progressing"}, lb1=node(serving="keepalived: x"), lb2=node(R), lb3=node(R))
    assert decide(DEFAULT, v, "lb1", R).go


def test_with_max_unavailable_two_the_two_nodes_that_serve_nothing_go_together_and_the_holder_after():
    two = dict(DEFAULT, maxUnavailable=2)
    v = view({"revision": R, "state": "Progressing", "holders": ["lb2"]}, lb1=node(serving="keepalived: x"),
             lb2=node(phase="draining"), lb3=node())
    d = decide(two, v, "lb3", R)
    assert d.go and d.turn["holders"] == ["lb2", "lb3"]
    v["turn"]["holders"] = ["lb2", "lb3"]
    assert not decide(two, v, "lb1", R).go


# --- drain or in place -------------------------------------------------------------------------


def test_a_turn_drains_unless_every_change_is_hitless_or_an_unproven_change_was_proven_on_a_peer():
    assert drain_reason([], None) is None  # runtime API only
    reload = Unproven("Backend app: reload (lines changed)")
    assert drain_reason([reload], None) == "Backend app: reload (lines changed)"  # untried: drain
    assert drain_reason([reload], "lb2") is None  # proven on lb2: in place
    assert drain_reason([reload, "Cluster web: update"], "lb2") == "Backend app: reload (lines changed); " \
                                                                   "Cluster web: update"
    many = [Unproven(f"Backend b{i}: reload") for i in range(5)] + ["changes unknown"]
    assert drain_reason(many, "lb2").endswith("(+3 more)")


def engine_of(states: dict[str, dict[str, dict]]) -> SimpleNamespace:
    haproxy = HAProxyReconciler()
    desired = {k: {n: SimpleNamespace(state=s) for n, s in objs.items()} for k, objs in states.items()}
    return SimpleNamespace(owners=[haproxy, SimpleNamespace(kinds=("VirtualIP",))], desired=desired)


def test_a_digest_covers_the_whole_desired_state_of_each_reconciler_that_tells_its_disruptions():
    web = {"Backend": {"app": {"balance": "leastconn"}}, "Frontend": {"web": {"binds": ["0.0.0.0:80"]}},
           "VirtualIP": {"web-vip": {"priority": 150}}}
    found = digests(engine_of(web))
    assert list(found) == ["HAProxy"]  # VirtualIP's owner has no disruption hook: never proven, always drains
    other_node = copy.deepcopy(web)
    other_node["VirtualIP"]["web-vip"]["priority"] = 100  # differs per node, outside HAProxy
    assert digests(engine_of(other_node)) == found
    changed = copy.deepcopy(web)
    changed["Backend"]["app"]["balance"] = "roundrobin"
    assert digests(engine_of(changed)) != found
    assert proof(R, found) == f"{R} HAProxy={found['HAProxy']}"


def test_a_proof_counts_only_from_a_peer_in_service_on_the_same_revision_with_the_same_desired_state():
    needed = {"HAProxy": "abcdef0123456789"}
    good = proof(R, needed)
    assert proven_on(view(lb1=node(), lb2=node(R, proven=good)), "lb1", R, needed) == "lb2"
    assert proven_on(view(lb1=node(R, proven=good)), "lb1", R, needed) is None  # not its own
    assert proven_on(view(lb2=node(R, "failed", "Degraded", proven=good)), "lb1", R, needed) is None
    assert proven_on(view(lb2=node(R, health="Degraded", proven=good)), "lb1", R, needed) is None
    assert proven_on(view(lb2=node(R, "soaking", proven=good)), "lb1", R, needed) == "lb2"  # in service
    assert proven_on(view(lb2=node(R, proven=proof(OLD, needed))), "lb1", R, needed) is None  # an older gate
    assert proven_on(view(lb2=node(OLD, proven=good)), "lb1", R, needed) is None  # no longer runs it
    other = proof(R, {"HAProxy": "0000000000000000"})
    assert proven_on(view(lb2=node(R, proven=other)), "lb1", R, needed) is None  # another desired state
    assert proven_on(view(lb2=node(R, proven=good)), "lb1", R, {}) is None  # nothing to prove


# --- HAProxy: hitless, unproven, disruptive ----------------------------------------------------


@pytest.fixture
def haproxy():
    rec = HAProxyReconciler()
    desired = rec.desired(load_tree(FIXTURES / "haproxy" / "tree"), Node("lb1", Runner(dry_run=True)))
    rec._preview = ("reload", [])  # HAProxy runs here (what preview() would find)
    return rec, desired


def backend_update(desired: dict, edit) -> Change:
    observed, want = copy.deepcopy(desired["Backend"]["app"].state), copy.deepcopy(desired["Backend"]["app"].state)
    edit(observed)
    return Change("Backend", "app", "update", want, observed)


def test_haproxy_server_weight_and_state_changes_are_hitless(haproxy):
    rec, desired = haproxy
    change = backend_update(desired, lambda o: o["servers"]["s2"].update(weight=5, state="maint"))
    assert rec.disruption(change, Node("lb1", Runner(dry_run=True))) is None


def test_haproxy_reloads_and_new_destinations_are_unproven_and_a_start_is_disruptive(haproxy):
    rec, desired = haproxy
    here = Node("lb1", Runner(dry_run=True))
    lines = backend_update(desired, lambda o: o["lines"].append("balance source"))
    why = rec.disruption(lines, here)
    assert isinstance(why, Unproven) and why.startswith("Backend app: reload")
    added = backend_update(desired, lambda o: o["servers"].pop("s3"))
    assert isinstance(rec.disruption(added, here), Unproven)
    moved = backend_update(desired, lambda o: o["servers"]["s3"].update(address="127.0.0.9"))
    assert isinstance(rec.disruption(moved, here), Unproven) and "another address" in rec.disruption(moved, here)
    frontend = Change("Frontend", "web", "create", {"binds": []}, None)
    assert isinstance(rec.disruption(frontend, here), Unproven)
    rec._preview = ("start", [])  # HAProxy does not run: a start is no hitless reload
    why = rec.disruption(frontend, here)
    assert why and not isinstance(why, Unproven) and "HAProxy starts" in why


def test_haproxy_counts_client_connections_over_old_and_new_workers():
    text = (FIXTURES / "haproxy" / "show-proc-old-workers.txt").read_text()
    assert all_workers(text) == [187, 181]  # the new worker, and the old one finishing its connections
    assert current_connections((FIXTURES / "haproxy" / "show-info-new-worker.txt").read_text()) == 1
    assert current_connections((FIXTURES / "haproxy" / "show-info-old-worker.txt").read_text()) == 2
    assert current_connections((FIXTURES / "haproxy" / "show-info.txt").read_text()) == 0


# --- Pacemaker: what runs on a node ------------------------------------------------------------


def cib(name: str):
    return parse_xml((FIXTURES / "pacemaker_rollout" / name).read_text())


def test_the_cib_status_says_which_resources_run_on_a_node_and_counts_one_in_flight_as_running():
    running = cib("cib-resource-on-lb1.xml")  # started on lb1; lb2's probe found it not running
    assert active_here(running, "lb1") == ["slow"] and active_here(running, "lb2") == []
    stopping = cib("cib-standby-stopping-lb1.xml")  # lb1 in standby: its stop is in flight (op-status -1)
    assert active_here(stopping, "lb1") == ["slow"]
    moved = cib("cib-standby-moved-away.xml")  # stopped on lb1, started on lb2
    assert active_here(moved, "lb1") == [] and active_here(moved, "lb2") == ["slow"]
    assert active_here(cib("cib-turn-lb1.xml"), "lb2") == []  # no resources at all
    assert dc_name(moved) == "lb1"


# --- probes ------------------------------------------------------------------------------------


@pytest.fixture
def web():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200 if self.path == "/" else 404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probes_pass_on_an_answer_they_accept_and_say_why_otherwise(web):
    assert probe({"type": "tcp", "port": web}, "127.0.0.1") is None
    assert probe({"type": "http", "port": web, "path": "/"}, "127.0.0.1") is None
    assert probe({"type": "http", "port": web, "path": "/missing"}, "127.0.0.1") == \
        f"http http://127.0.0.1:{web}/missing: status 404"
    assert probe({"type": "http", "port": web, "path": "/missing", "expectStatus": [404]}, "127.0.0.1") is None
    assert probe({"type": "http", "port": web, "path": "/", "expectStatus": [204]}, "127.0.0.1") is not None
    closed = free_port()
    assert probe({"type": "tcp", "port": closed}, "127.0.0.1").startswith(f"tcp 127.0.0.1:{closed}:")
    assert probe({"type": "tcp", "address": "127.0.0.1", "port": web}, "192.0.2.1") is None  # its own address wins
