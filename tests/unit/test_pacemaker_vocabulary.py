"""The Pacemaker vocabulary: manifests → normalized states → CIB XML and back, on CIBs that
pcs 0.11 and crmsh 4.4 wrote (tests/fixtures/pacemaker/make-vocabulary-cibs.sh), and the
import → render round trip with ids kept."""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.pacemaker import tools
from reconcilers.pacemaker.candidate import render_configuration
from reconcilers.pacemaker.cib import build_constraint, build_group, build_primitive, parse_constraint, parse_resources, wrap_clone
from reconcilers.pacemaker.cluster_cib import parse_cluster_config
from reconcilers.pacemaker.importer import import_cluster, normalized
from reconcilers.pacemaker.ownership import observe
from reconcilers.pacemaker.resources import ClusterResourceReconciler

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker"
COROSYNC = (FIXTURES / "corosync.conf.vocabulary").read_text()  # lb1..lb3, cluster "vocab"


def cib(name: str) -> ET.Element:
    return tools.parse_xml((FIXTURES / name).read_text())


def canonical(el: ET.Element) -> bytes:
    """An element with its attribute sets in one order and its attributes sorted (the
    order pcs and crmsh give those is not meaningful to Pacemaker)."""
    el = normalized(el)
    for e in el.iter():
        e.attrib = dict(sorted(e.attrib.items()))
    return ET.tostring(el)


def desired(tmp_path: Path, docs: list[dict] | str, node: str = "lb1") -> ClusterResourceReconciler:
    text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs, sort_keys=False)
    (tmp_path / "tree.yaml").write_text(text)
    rec = ClusterResourceReconciler()
    rec.desired(load_tree(tmp_path), Node(node, Runner(dry_run=True)))
    return rec


@pytest.mark.parametrize("fixture", ["cib_pcs_vocabulary.xml", "cib_crmsh_vocabulary.xml"])
def test_every_resource_and_constraint_pcs_or_crmsh_wrote_reads_back_to_the_same_xml(fixture):
    configuration = cib(fixture).find("configuration")
    states, _, order = parse_resources(configuration)
    members = {m for s in states.values() for m in s.get("group", [])}
    rebuilt = ET.Element("resources")
    for name in order:
        if name in members:
            continue
        state = states[name]
        inner = build_group(name, state, [build_primitive(m, states[m]) for m in state["group"]]) \
            if "group" in state else build_primitive(name, state)
        rebuilt.append(wrap_clone(name, state, inner))
    assert canonical(rebuilt) == canonical(configuration.find("resources"))
    constraints = ET.Element("constraints")
    for el in configuration.find("constraints"):
        constraints.append(build_constraint(parse_constraint(el)))
    assert canonical(constraints) == canonical(configuration.find("constraints"))


def test_ids_the_tools_derive_are_left_out_and_the_others_kept():
    states, tops, _ = parse_resources(cib("cib_pcs_vocabulary.xml").find("configuration"))
    db = states["db"]
    assert "id" not in db["clone"] and all("id" not in op for op in db["operations"])  # pcs's own ids
    assert db["operations"][2]["params"] == {"OCF_CHECK_LEVEL": "10"}
    assert db["clone"]["meta"]["promotable"] == "true"
    assert tops["db-clone"] == "db" and tops["web-data"] == "web-data"
    crm, _, _ = parse_resources(cib("cib_crmsh_vocabulary.xml").find("configuration"))
    assert crm["p_db"]["operations"][0]["id"] == "p_db-monitor-10s"  # crmsh names ops otherwise: kept
    assert crm["p_db"]["clone"]["id"] == "ms_db" and crm["other"]["operationsId"] == "other-ops"


@pytest.mark.parametrize("fixture", ["cib_pcs_vocabulary.xml", "cib_crmsh_vocabulary.xml"])
def test_an_imported_cib_renders_back_to_the_same_configuration_and_plans_nothing(tmp_path, fixture):
    original = cib(fixture)
    docs, notes = import_cluster(original, COROSYNC)
    rec = desired(tmp_path, docs)
    rendered = render_configuration(rec._config, [(n, rec._states[n]) for n in rec._order], rec._node_ids,
                                    rec._value)
    assert canonical(rendered) == canonical(original.find("configuration"))
    # applied to the CIB it came from, the import is in sync: every object, nothing to write
    seen = observe(original.find("configuration"), rec._states, rec._config)
    for rsc, params in rec._secrets.items():  # this node's cibsecret files: test_pacemaker_secrets.py
        for param in params:
            assert seen.resources[rsc]["params"][param] == "lrm://"
            seen.resources[rsc]["params"][param] = rec._states[rsc]["params"][param]
    assert {n: seen.resources[n] for n in rec._states} == rec._states
    assert seen.config == rec._config


def test_a_cibsecret_parameter_imports_as_a_reference_and_never_as_a_value():
    docs, notes = import_cluster(cib("cib_pcs_vocabulary.xml"), COROSYNC)
    fence = next(d for d in docs if d["metadata"]["name"] == "fence-lb1")
    assert fence["spec"]["params"]["password"] == {"file": "/var/lib/pacemaker/lrm/secrets/fence-lb1/password"}
    inline = copy.deepcopy(cib("cib_pcs_vocabulary.xml"))
    for nv in inline.iter("nvpair"):
        if nv.get("name") == "password":
            nv.set("value", "calvin")
    secrets: dict = {}
    docs, notes = import_cluster(inline, COROSYNC, secrets_dir=Path("/s"), secrets=secrets)
    assert "calvin" not in yaml.safe_dump_all(docs) and "calvin" not in " ".join(notes)
    fence = next(d for d in docs if d["metadata"]["name"] == "fence-lb1")
    assert fence["spec"]["params"]["password"] == {"file": "/s/fence-lb1.password"}
    assert secrets[Path("/s/fence-lb1.password")] == "calvin"  # for `reconcile import` to write, 0600
    assert any("held a password inline in the CIB: it went to /s/fence-lb1.password" in n for n in notes)


def test_reconcile_import_pacemaker_takes_the_cib_and_corosync_conf_and_writes_the_secrets(tmp_path, capsys):
    from controller.cli import main

    inline = (FIXTURES / "cib_pcs_vocabulary.xml").read_text().replace('value="lrm://"', 'value="calvin"', 1)
    (tmp_path / "cib.xml").write_text(inline)
    (tmp_path / "corosync.conf").write_text(COROSYNC)
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    assert main(["import", "pacemaker", str(tmp_path / "corosync.conf"), str(tmp_path / "cib.xml"),
                 "--output-dir", str(out), "--secrets-dir", str(secrets)]) == 0
    text = (out / "pacemaker.yaml").read_text()
    assert "calvin" not in text and "kind: Cluster" in text and "name: vocab" in text
    [written] = secrets.iterdir()
    assert written.read_text() == "calvin\n" and written.stat().st_mode & 0o777 == 0o600
    assert main(["import", "pacemaker", str(tmp_path / "corosync.conf")]) == 1  # no CIB
    assert "give one CIB" in capsys.readouterr().err


VOCABULARY = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: vocab
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24, attributes: {rack: r1}, utilization: {cpu: "8", memory: "4096"}}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
    - {name: lb3, id: 3, address: 192.0.2.13/24}
  crypto: none
  stonithEnabled: true
  properties:
    - id: cib-bootstrap-options
      values: {no-quorum-policy: stop, cluster-recheck-interval: 5min}
      ids: {cluster-recheck-interval: cib-bootstrap-options-cluster-recheck-inte}
  resourceDefaults: {resource-stickiness: "100"}
  operationDefaults: {timeout: 120s}
  alerts:
    - id: to-file
      path: /usr/share/pacemaker/alerts/alert_file.sh.sample
      meta: {timeout: 15s}
      recipients: [{id: to-file-log, value: /var/log/pacemaker-alerts.log}]
  tags:
    - {id: databases, refs: [db-clone, db-vip]}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db
spec:
  cluster: vocab
  agent: ocf:pacemaker:Stateful
  meta: {failure-timeout: 30s}
  operations:
    - {name: demote, interval: 0s, timeout: 60s}
    - {name: monitor, interval: 10s, role: Promoted, timeout: 20s}
    - {name: monitor, interval: 11s, role: Unpromoted, timeout: 20s, params: {OCF_CHECK_LEVEL: "10"}}
    - {name: notify, interval: 0s, timeout: 30s}
    - {name: promote, interval: 0s, timeout: 60s}
    - {name: start, interval: 0s, timeout: 60s}
    - {name: stop, interval: 0s, timeout: 60s}
  utilization: {cpu: "2", memory: "512"}
  clone:
    meta: {clone-max: "3", clone-node-max: "1", notify: "true", promotable: "true", promoted-max: "1"}
  location:
    - {id: location-db-clone-lb1-50, node: lb1, score: 50}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: ping
spec:
  cluster: vocab
  agent: ocf:pacemaker:ping
  params: {host_list: 192.0.2.1}
  operations: [{name: monitor, interval: 15s}]
  clone: {meta: {interleave: "true"}}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db-vip
spec:
  cluster: vocab
  agent: ocf:heartbeat:IPaddr2
  params: {cidr_netmask: "24", ip: 192.0.2.120, nic: eth0}
  operations:
    - {name: monitor, interval: 10s, timeout: 20s}
    - {name: start, interval: 0s, timeout: 20s}
    - {name: stop, interval: 0s, timeout: 20s}
  colocation:
    - {id: colocation-db-vip-db-clone-INFINITY, with: db, role: Started, withRole: Promoted}
  order:
    - {id: order-db-clone-db-vip-mandatory, first: db, firstAction: promote, thenAction: start, symmetrical: false}
    - {id: order-db-clone-db-vip-mandatory-1, first: db, firstAction: demote, thenAction: stop, symmetrical: false}
    - {id: order-ping-clone-db-vip-mandatory, first: ping, firstAction: start, thenAction: start, requireAll: false}
"""


def test_a_promotable_clone_with_a_vip_on_the_promoted_instance_written_by_hand(tmp_path):
    """A manifest written by hand (names, not clone ids; the constraints with their
    resources) says what pcs's commands said: the same states as the CIB pcs wrote."""
    rec = desired(tmp_path, VOCABULARY)
    configuration = cib("cib_pcs_vocabulary.xml").find("configuration")
    seen = observe(configuration, rec._states, rec._config)
    assert seen.resources["db"] == rec._states["db"]
    assert seen.resources["db-vip"] == rec._states["db-vip"]
    # the colocation with the promoted instance names the clone in the CIB
    assert rec._states["db-vip"]["colocation"][0]["with"] == "db-clone"
    assert parse_cluster_config(configuration, rec._config) == rec._config


def test_rules_with_dates_and_node_attributes_read_back(tmp_path):
    configuration = cib("cib_crmsh_vocabulary.xml").find("configuration")
    cons = {c.get("id"): parse_constraint(c) for c in configuration.find("constraints")}
    [rule] = cons["loc_vip_dates"]["rules"]
    assert rule["score"] == 100 and rule["expressions"][0]["date"]["operation"] == "in_range"
    [hours] = cons["loc_other_hours"]["rules"]
    assert hours["expressions"][0]["date"]["dateSpec"] == {"hours": "9-17", "weekdays": "1-5"}
    assert cons["loc_pat"]["pattern"] == "^v"
    assert [s["resources"] for s in cons["set1"]["sets"]] == [["vip", "other"], ["ms_db"]]
