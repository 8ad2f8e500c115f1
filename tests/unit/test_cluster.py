"""Cluster: corosync.conf rendered from a manifest and read back (round trip), the Debian
default file read as it is, and the desired state of a node."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers import cluster as cluster_mod
from reconcilers.base import GENERATED_HEADER, Change, Node, Runner
from reconcilers.cluster import (
    ClusterReconciler, corosync_settings, observed_settings, parse_corosync_conf, render_corosync_conf,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker"

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  stonithEnabled: false
"""


def manifest(tmp_path: Path, text: str = CLUSTER):
    (tmp_path / "cluster.yaml").write_text(text)
    return load_tree(tmp_path)


def desired(tmp_path: Path, text: str = CLUSTER, node: str = "lb1") -> tuple[ClusterReconciler, dict]:
    rec = ClusterReconciler()
    out = rec.desired(manifest(tmp_path, text), Node(node, Runner(dry_run=True)))["Cluster"]
    return rec, {name: d.state for name, d in out.items()}


def test_two_nodes_get_two_node_quorum_and_the_default_token(tmp_path):
    _, states = desired(tmp_path)
    assert states["web"]["corosync"] == {
        "clusterName": "web", "transport": "knet", "token": 1000, "crypto": "none",
        "nodes": [{"name": "lb1", "id": 1, "address": "192.0.2.11"}, {"name": "lb2", "id": 2, "address": "192.0.2.12"}],
        "quorum": {"twoNode": True, "waitForAll": True},
    }
    assert states["web"]["properties"] == {"stonith-enabled": "false"}
    assert states["web"]["daemons"] == {"corosync": "running", "pacemaker": "running"}
    assert "authkey" not in states["web"]


def test_an_authkey_turns_crypto_on_and_stays_a_token(tmp_path):
    text = CLUSTER + "  authkey: {file: /etc/reconcile/secrets/corosync.authkey}\n  token: 3s\n"
    rec, states = desired(tmp_path, text)
    assert states["web"]["corosync"]["crypto"] == "aes256/sha256"
    assert states["web"]["corosync"]["token"] == 3000
    assert states["web"]["authkey"] == "<secret: in sync>"
    conf = rec._render("web")
    assert "crypto_cipher: aes256\n" in conf and "keyfile: /etc/corosync/authkey\n" in conf


def test_the_properties_state_stonith_explicitly(tmp_path):
    text = CLUSTER.replace("stonithEnabled: false", "stonithEnabled: true") + \
        "  properties: {no-quorum-policy: ignore, dc-deadtime: 5s}\n"
    _, states = desired(tmp_path, text)
    assert states["web"]["properties"] == {"stonith-enabled": "true", "no-quorum-policy": "ignore",
                                           "dc-deadtime": "5s"}


def test_a_cluster_without_pacemaker_runs_nothing(tmp_path):
    _, states = desired(tmp_path, CLUSTER.replace("  stonithEnabled: false\n", "  stack: none\n"))
    assert states == {}


def test_a_node_outside_the_cluster_has_nothing(tmp_path):
    _, states = desired(tmp_path, node="lb9")
    assert states == {}


def test_the_rendered_file_is_what_a_lab_node_got_and_reads_back_to_the_same_settings(tmp_path):
    text = CLUSTER + "  quorum: {twoNode: true, waitForAll: true}\n"
    rec, states = desired(tmp_path, text)
    conf = rec._render("web")
    assert conf == (FIXTURES / "corosync.conf.generated").read_text()
    assert conf.startswith(f"# {GENERATED_HEADER}\n")
    assert observed_settings(parse_corosync_conf(conf)) == states["web"]["corosync"]


def test_wait_for_all_is_only_written_when_stated(tmp_path):
    rec, states = desired(tmp_path)
    conf = rec._render("web")
    assert "two_node: 1" in conf and "wait_for_all" not in conf
    # two_node implies wait_for_all in votequorum: the file without it reads back the same
    assert observed_settings(parse_corosync_conf(conf))["quorum"] == {"twoNode": True, "waitForAll": True}
    off = render_corosync_conf({**states["web"]["corosync"], "quorum": {"twoNode": True, "waitForAll": False}}, True)
    assert "wait_for_all: 0" in off
    assert observed_settings(parse_corosync_conf(off))["quorum"] == {"twoNode": True, "waitForAll": False}


def test_three_nodes_have_no_two_node_quorum(tmp_path):
    text = CLUSTER.replace("  stonithEnabled", "    - {name: lb3, id: 3, address: 192.0.2.13/24}\n  stonithEnabled")
    rec, states = desired(tmp_path, text)
    assert states["web"]["corosync"]["quorum"] == {"twoNode": False, "waitForAll": False}
    assert "two_node" not in rec._render("web")


def test_the_debian_default_file_is_read_as_another_cluster():
    conf = parse_corosync_conf((FIXTURES / "corosync.conf.debian-default").read_text())
    settings = observed_settings(conf)
    assert settings["clusterName"] == "debian"
    assert settings["crypto"] == "none"
    assert settings["nodes"] == [{"name": "node1", "id": 1, "address": "127.0.0.1"}]
    assert settings["token"] == 3000  # Corosync's default when the file does not say


def test_observe_reads_the_file_and_says_whether_it_is_ours(tmp_path, monkeypatch):
    rec, _ = desired(tmp_path)
    node = Node("lb1", Runner(dry_run=True))
    conf = tmp_path / "corosync.conf"
    monkeypatch.setattr(cluster_mod, "COROSYNC_CONF", conf)
    monkeypatch.setattr(cluster_mod, "daemons_running", lambda node: {"corosync": False, "pacemaker": False})
    assert rec.observe(node) == {"Cluster": {}}
    conf.write_text(rec._render("web"))
    observed = rec.observe(node)["Cluster"]["web"]
    assert observed["file"] == "generated"
    assert observed["daemons"] == {"corosync": "stopped", "pacemaker": "stopped"}
    assert "properties" not in observed  # Pacemaker does not run: unknown, not empty
    conf.write_text(rec._render("web").replace("token: 1000", "token: 5000"))
    observed = rec.observe(node)["Cluster"]["web"]
    assert (observed["file"], observed["corosync"]["token"]) == ("edited", 5000)
    conf.write_text((FIXTURES / "corosync.conf.debian-default").read_text())
    assert rec.observe(node)["Cluster"]["debian"]["file"] == "not written by reconcile"


def test_the_authkey_is_compared_here_and_only_a_token_leaves(tmp_path, monkeypatch):
    key = tmp_path / "secret.key"
    key.write_bytes(bytes(range(256)))
    text = CLUSTER + f"  authkey: {{file: {key}}}\n"
    rec, _ = desired(tmp_path, text)
    node = Node("lb1", Runner(dry_run=True))
    installed = tmp_path / "authkey"
    monkeypatch.setattr(cluster_mod, "AUTHKEY", installed)
    spec = rec._spec["web"]
    assert rec._observe_authkey(spec, node) == {}
    installed.write_bytes(bytes(range(256)))
    assert rec._observe_authkey(spec, node) == {"authkey": "<secret: in sync>"}
    installed.write_bytes(b"x" * 256)
    assert rec._observe_authkey(spec, node) == {"authkey": "<secret: differs>"}


def test_settings_of_the_example_cluster(tmp_path):
    tree = load_tree(Path(__file__).resolve().parents[2] / "desired-state")
    web = tree.get("Cluster", "web")
    settings = corosync_settings("web", web.spec)
    assert settings["token"] == 1000 and settings["quorum"] == {"twoNode": True, "waitForAll": True}


def test_whether_this_machine_holds_an_address_is_read_from_proc():
    # 192.0.2.0/24 exists only inside lab namespaces, never on the machine running unit tests
    assert cluster_mod._address_is_local("127.0.0.1")
    assert not cluster_mod._address_is_local("192.0.2.11")


# --- the packages' default cluster (a fresh Debian node) -----------------------------------------

DEBIAN = (FIXTURES / "corosync.conf.debian-default").read_text()
STATUS = FIXTURES / "dpkg-status-corosync"  # dpkg's record of the package, with the conffile's md5
EMPTY_CIB = ("<cib><configuration><crm_config/><nodes><node id='1' uname='node1'/></nodes>"
             "<resources/><constraints/></configuration></cib>")


def cib(text: str):
    from reconcilers.pacemaker import parse_xml

    return parse_xml(text)


def test_an_untouched_package_file_is_recognised_by_dpkgs_md5():
    assert cluster_mod.untouched_package_file(cluster_mod.COROSYNC_CONF, DEBIAN, STATUS)
    assert not cluster_mod.untouched_package_file(cluster_mod.COROSYNC_CONF, DEBIAN + "# edited\n", STATUS)
    assert not cluster_mod.untouched_package_file(Path("/etc/other.conf"), DEBIAN, STATUS)
    assert not cluster_mod.untouched_package_file(cluster_mod.COROSYNC_CONF, DEBIAN, STATUS.with_name("missing"))


def test_the_packages_default_one_node_cluster_without_resources_may_be_replaced():
    assert cluster_mod.default_cluster(DEBIAN, None, STATUS) == "debian"  # Pacemaker never ran
    assert cluster_mod.default_cluster(DEBIAN, cib(EMPTY_CIB), STATUS) == "debian"


@pytest.mark.parametrize("why, text, cib_text", [
    ("the file was edited", DEBIAN.replace("cluster_name: debian", "cluster_name: ops"), EMPTY_CIB),
    ("a comment was added", "# mine\n" + DEBIAN, EMPTY_CIB),
    ("it runs a resource", DEBIAN, EMPTY_CIB.replace("<resources/>",
                                                     "<resources><primitive id='ip' class='ocf' provider='heartbeat' "
                                                     "type='IPaddr2'/></resources>")),
    ("it has a constraint", DEBIAN, EMPTY_CIB.replace("<constraints/>",
                                                      "<constraints><rsc_location id='l' rsc='x' node='node1' "
                                                      "score='1'/></constraints>")),
    ("reconcile wrote it", f"# {GENERATED_HEADER}\n" + DEBIAN, EMPTY_CIB),
])
def test_any_other_existing_cluster_is_never_replaced(why, text, cib_text):
    assert cluster_mod.default_cluster(text, cib(cib_text), STATUS) is None, why


def test_the_plan_says_the_default_cluster_is_replaced_and_a_foreign_one_is_not(tmp_path, monkeypatch):
    rec, _ = desired(tmp_path)
    node = Node("lb1", Runner(dry_run=True))
    conf = tmp_path / "corosync.conf"
    monkeypatch.setattr(cluster_mod, "COROSYNC_CONF", conf)
    monkeypatch.setattr(cluster_mod, "CIB_DIR", tmp_path / "cib")
    monkeypatch.setattr(cluster_mod, "DPKG_STATUS", STATUS)
    monkeypatch.setattr(cluster_mod, "daemons_running", lambda node: {"corosync": False, "pacemaker": False})
    change = Change("Cluster", "web", "create", {}, None)
    conf.write_text(DEBIAN)
    assert any("replaces the packages' default one-node cluster 'debian'" in n for n in rec.explain(change, node))
    conf.write_text(DEBIAN.replace("debug: off", "debug: on"))
    notes = rec.explain(change, node)
    assert not any("default one-node" in n for n in notes) and any("reconcile did not write" in n for n in notes), notes
