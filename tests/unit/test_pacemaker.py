"""Pacemaker helpers, on outputs recorded from the real tools (Pacemaker 2.1.5 in lab nodes):
crm_mon's status, crm_simulate's transition summary, cluster properties in crm_config."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import re
from pathlib import Path

import pytest

from reconcilers.pacemaker import tools as pacemaker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- crm_mon -----------------------------------------------------------------------------


def test_crm_mon_names_the_dc_and_the_online_nodes():
    status = pacemaker.parse_crm_mon(fixture("crm_mon_formed_no_resources.xml"))
    assert (status.dc, status.quorate, status.pacemakerd) == ("lb2", True, "running")
    assert status.online == ["lb1", "lb2"] == status.nodes


def test_crm_mon_while_the_first_dc_is_being_elected_has_no_dc():
    status = pacemaker.parse_crm_mon(fixture("crm_mon_no_dc.xml"))
    assert status.dc is None and not status.quorate
    assert status.pacemakerd == "running"


def test_crm_mon_of_a_running_cluster_with_resources():
    status = pacemaker.parse_crm_mon(fixture("crm_mon_running.xml"))
    assert status.dc == "lb1" and status.online == ["lb1", "lb2"]


def test_crm_mon_without_pacemaker_has_no_cluster():
    status = pacemaker.parse_crm_mon(fixture("crm_mon_not_running.xml"))
    assert status.dc is None and status.nodes == [] and status.pacemakerd == ""


# --- crm_simulate ------------------------------------------------------------------------


@pytest.mark.parametrize("case, lines", [
    ("start", ["db: start on lb1", "db-vip: start on lb1"]),
    ("move", ["db-vip: move lb1 → lb2", "db: move lb1 → lb2"]),
    ("restart", ["db-vip: restart on lb1 (resource definition change)",
                 "db: restart on lb1 (required db-vip start)"]),
    ("stop", ["db: stop on lb1 (node availability)"]),
    ("clone", ["ping:0: start on lb2", "ping:1: start on lb1", "g1: start on lb2", "g2: start on lb2"]),
    ("nodefail", ["db-vip: start on lb2", "db: start on lb2"]),
    ("fresh_cluster", ["db: start on lb1"]),
    ("nothing", []),
])
def test_transition_summary_lines(case, lines):
    actions = pacemaker.parse_transition(fixture(f"crm_simulate_{case}.xml"))
    assert [a.describe() for a in actions] == lines


def test_clone_instances_belong_to_their_resource():
    actions = pacemaker.parse_transition(fixture("crm_simulate_clone.xml"))
    assert {a.base_resource for a in actions} == {"ping", "g1", "g2"}


def test_a_blocked_action_says_so():
    text = ('<pacemaker-result><actions><rsc_action action="start" resource="db" node="lb1" reason="no quorum" '
            'blocked="true"/></actions></pacemaker-result>')
    [action] = pacemaker.parse_transition(text)
    assert action.describe() == "db: start on lb1 (no quorum, blocked)"


@pytest.mark.parametrize("case", ["start", "move", "restart", "stop", "clone"])
def test_the_xml_summary_matches_the_text_summary(case):
    """The same transitions printed as text (the 'Transition Summary' people read) name the
    same resources, actions and nodes as the XML the parser reads."""
    summary = fixture(f"crm_simulate_{case}.txt").split("Transition Summary:")[1].split("\n\n")[0]
    rows = re.findall(r"^\s+\* (\w+)\s+(\S+)\s+\(\s*(.*?)\s*\)", summary, re.M)
    actions = pacemaker.parse_transition(fixture(f"crm_simulate_{case}.xml"))
    assert [(verb.lower(), rsc) for verb, rsc, _ in rows] == [(a.action, a.resource) for a in actions]
    for (_, _, where), a in zip(rows, actions):
        assert where.replace(" -> ", " → ") in a.describe()


# --- the CIB -----------------------------------------------------------------------------


def test_cib_xml_is_parsed_without_layout_whitespace():
    cib = pacemaker.parse_xml(fixture("cib_managed.xml"))
    assert all(e.text is None and e.tail is None for e in cib.iter())
    assert cib.get("epoch") and cib.find("status") is not None


def test_git_owns_the_properties_except_what_pacemaker_maintains_and_the_operators_switch():
    from reconcilers.pacemaker.cluster_cib import parse_cluster_config, write_properties

    cib = pacemaker.parse_xml(fixture("cib_managed.xml"))
    configuration = cib.find("configuration")
    desired = {"properties": {"stonith-enabled": "false", "cluster-recheck-interval": "5min"}}
    # dc-deadtime is no longer in git: drift; dc-version and friends are Pacemaker's
    assert parse_cluster_config(configuration, desired)["properties"] == [{
        "id": "cib-bootstrap-options", "values": {"stonith-enabled": "false", "no-quorum-policy": "stop",
                                                  "dc-deadtime": "5s"},
        "ids": {"stonith-enabled": "reconcile-stonith-enabled", "no-quorum-policy": "reconcile-no-quorum-policy",
                "dc-deadtime": "reconcile-dc-deadtime"}}]
    crm_config = configuration.find("crm_config")
    ET.SubElement(crm_config.find("cluster_property_set"), "nvpair", {
        "id": "cib-bootstrap-options-maintenance-mode", "name": "maintenance-mode", "value": "true"})
    write_properties(crm_config, desired["properties"], None)
    pairs = {nv.get("name"): nv.get("id") for nv in crm_config.iter("nvpair")}
    assert pairs["cluster-recheck-interval"] == "cib-bootstrap-options-cluster-recheck-interval"
    assert pairs["stonith-enabled"] == "cib-bootstrap-options-stonith-enabled"  # the id Pacemaker's tools give
    assert "no-quorum-policy" not in pairs and "dc-deadtime" not in pairs  # no longer in git
    assert pairs["dc-version"] == "cib-bootstrap-options-dc-version"  # Pacemaker's own: kept
    assert pairs["maintenance-mode"]  # the operator's switch, not in git: kept
    assert parse_cluster_config(configuration, desired)["properties"] == desired["properties"]


def test_a_patch_leads_to_a_newer_epoch_of_the_same_admin_epoch():
    live = pacemaker.parse_xml(fixture("cib_managed.xml"))
    candidate = pacemaker.parse_xml(fixture("cib_managed.xml"))
    pacemaker.bump_epoch(candidate, live)
    assert int(candidate.get("epoch")) == int(live.get("epoch")) + 1
    assert candidate.get("admin_epoch") == live.get("admin_epoch")
    assert candidate.get("num_updates") == live.get("num_updates")


def test_only_the_configuration_decides_whether_there_is_something_to_push():
    live = pacemaker.parse_xml(fixture("cib_managed.xml"))
    other = pacemaker.parse_xml(fixture("cib_managed.xml"))
    other.set("num_updates", "999")
    other.remove(other.find("status"))
    assert pacemaker.same_configuration(live, other)
    other.find("configuration/crm_config/cluster_property_set/nvpair").set("value", "true")
    assert not pacemaker.same_configuration(live, other)


# --- crm_verify -V -----------------------------------------------------------------------


def test_crm_verify_schema_errors_are_reported_without_the_temp_file_name():
    text = fixture("crm_verify_unknown_with_rsc.txt")
    assert pacemaker.parse_verify(78, text, path="bad1.xml") == [
        '6: element rsc_colocation: validity error : IDREF attribute with-rsc references an unknown ID "nope"']
    [bogus, extra] = pacemaker.parse_verify(78, fixture("crm_verify_schema_error.txt"), path="bad2.xml")
    assert "Invalid attribute bogus for element primitive" in bogus and "extra content" in extra


def test_crm_verify_warnings_alone_are_not_errors():
    # exit 78 all the same: an active orphan right after its resource left the configuration
    assert pacemaker.parse_verify(78, fixture("crm_verify_active_orphan_warning.txt")) == []


def test_stonith_without_a_device_is_an_error_unless_the_device_may_come_later():
    text = fixture("crm_verify_stonith_without_device.txt")
    assert pacemaker.parse_verify(78, text) == [
        "Resource start-up disabled since no STONITH resources have been defined",
        "Either configure some or disable STONITH with the stonith-enabled option",
        "NOTE: Clusters with shared data need STONITH to ensure data integrity"]
    assert pacemaker.parse_verify(78, text, missing_stonith_ok=True) == []
    mixed = text + "(unpack_config) \terror: something else\n"
    assert pacemaker.parse_verify(78, mixed, missing_stonith_ok=True) == ["something else"]


def test_a_crm_verify_failure_without_a_report_is_an_error():
    assert pacemaker.parse_verify(66, "crm_verify: Could not read file") == [
        "crm_verify exited 66: crm_verify: Could not read file"]


# --- Pacemaker-placed containers -----------------------------------------------------------------


def test_crm_mon_tells_where_each_resource_is_active():
    assert pacemaker.parse_crm_mon(fixture("crm_mon_lxc_container.xml")).active == {"ct1": ["lb1"]}
    assert pacemaker.parse_crm_mon(fixture("crm_mon_formed_no_resources.xml")).active == {}


def test_node_attributes_and_lxc_primitives_of_a_recorded_cib():
    cib = pacemaker.parse_xml(fixture("cib_lxc_container.xml"))
    assert pacemaker.lxc_primitives(cib) == {"ct1": "ct1"}
    attrs = pacemaker.node_attributes(cib, "lb2")
    assert attrs[pacemaker.container_attribute("ct1")] == pacemaker.CONTAINER_ATTRIBUTE_VALUE
    assert pacemaker.node_attributes(cib, "lb9") == {}
    assert pacemaker.lxc_primitives(pacemaker.parse_xml(fixture("cib_managed.xml"))) == {}
