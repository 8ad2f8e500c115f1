"""Health of the Pacemaker vocabulary, on a crm_mon recorded in the lab (a promotable
ocf:pacemaker:Stateful clone on lb1/lb2 promoted on lb2, and an IPaddr2 colocated with the
Promoted role): states in the shapes reconcilers/pacemaker/cib.py builds."""
from __future__ import annotations

from pathlib import Path

from reconcilers.pacemaker.health import Snapshot, parse_resources, resource_health
from reconcilers.pacemaker.tools import parse_crm_mon

TEXT = (Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker" / "crm_mon_promotable.xml").read_text()
DB = {"agent": "ocf:pacemaker:Stateful", "clone": {"meta": {"promotable": "true", "promoted-max": "1"}},
      "operations": [{"name": "monitor", "interval": "5s", "role": "Promoted"}]}
VIP = {"agent": "ocf:heartbeat:IPaddr2", "params": {"ip": "192.0.2.130", "cidr_netmask": "24", "nic": "eth0"},
       "colocation": [{"with": "db-clone", "withRole": "Promoted"}],
       "order": [{"first": "db-clone", "firstAction": "promote", "thenAction": "start"}]}


def snap() -> Snapshot:
    return Snapshot(parse_crm_mon(TEXT), parse_resources(TEXT))


def test_a_promotable_clone_with_one_promoted_instance_is_healthy_and_says_where():
    s = snap()
    assert s.resources["db"].promoted == ["lb2"] and s.resources["db-clone"] is s.resources["db"]
    h = resource_health("db", DB, s)
    assert (h.status, h.reason) == ("Healthy", "Running") and "promoted on lb2" in h.message


def test_a_promotable_clone_without_a_promoted_instance_is_degraded():
    s = snap()
    s.resources["db"].promoted = []
    assert resource_health("db", DB, s).reason == "NotPromoted"


def test_a_resource_colocated_with_the_promoted_role_is_checked_against_the_promoted_node():
    s = snap()
    assert resource_health("db-vip", VIP, s).status == "Healthy"
    s.resources["db-vip"].nodes = ["lb1"]  # where the clone runs, but unpromoted
    h = resource_health("db-vip", VIP, s)
    assert (h.reason, h.message) == ("NotWithColocated", "runs on lb1, but the promoted db-clone runs on lb2 "
                                                         "(colocated with it)")


def test_a_clone_is_complete_at_clone_max_instances():
    s = snap()
    s.resources["db"].nodes = ["lb2"]
    assert resource_health("db", DB, s).reason == "PartlyRunning"
    one = {**DB, "clone": {"meta": {"promotable": "true", "clone-max": "1"}}}
    assert resource_health("db", one, s).status == "Healthy"


def test_sets_forms_of_meta_and_rule_locations_are_read():
    s = snap()
    stopped = {**VIP, "meta": [{"id": "m", "values": {"target-role": "Stopped"}}]}
    assert resource_health("db-vip", stopped, s).reason == "RunningButStopped"
    by_rule = {**VIP, "location": [{"rules": [{"score": 100, "expressions": []}]}, {"node": "lb1", "score": "50"}]}
    assert resource_health("db-vip", by_rule, s).reason == "NotWhereIntended"
