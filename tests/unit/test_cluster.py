"""Cluster: corosync.conf rendered from a manifest and read back (round trip), files other
tools wrote read as they are, what a change needs (reload, restart), the desired state of
a node, and the Debian packages' untouched default cluster told apart from a real one."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controller.loader import load_tree
from reconcilers.base import GENERATED_HEADER, Node, Runner
from reconcilers.pacemaker import cluster as cluster_mod
from reconcilers.pacemaker import corosync, daemons
from reconcilers.pacemaker.cluster import ClusterReconciler

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "pacemaker"
CORPUS = Path("/work/shared/corpus/corosync")

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
"""

FULL = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: db
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24, links: [192.0.2.11, "2001:db8:1::11"]}
    - {name: lb2, id: 2, address: 192.0.2.12/24, links: [192.0.2.12, "2001:db8:1::12"], votes: 1}
  links:
    - {priority: 20, pingInterval: 200, pingTimeout: 800}
    - {priority: 10}
  authkey: {file: /etc/reconcile/secrets/corosync.authkey}
  token: 3s
  totem: {consensus: 3600ms, join: 60ms, tokenRetransmitsBeforeLossConst: 10, maxMessages: 20, linkMode: passive}
  quorum:
    lastManStanding: true
    lastManStandingWindow: 20s
    device:
      votes: 1
      net: {host: 192.0.2.30, algorithm: ffsplit, tls: "off"}
  corosync:
    logging: {to_logfile: "yes", logfile: /var/log/corosync/corosync.log, to_syslog: "no",
              logger_subsys: [{subsys: QUORUM, debug: "on"}]}
    totem: {netmtu: "1200"}
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
        "nodes": [{"name": "lb1", "id": 1, "addresses": ["192.0.2.11"]},
                  {"name": "lb2", "id": 2, "addresses": ["192.0.2.12"]}],
        "quorum": {"twoNode": True, "waitForAll": True},
    }
    assert states["web"]["daemons"] == {"corosync": "running", "pacemaker": "running"}
    assert "authkey" not in states["web"]


def test_crypto_is_on_by_default_with_the_authkey_a_token(tmp_path):
    text = CLUSTER.replace("  crypto: none\n", "  authkey: {file: /etc/reconcile/secrets/corosync.authkey}\n  token: 3s\n")
    rec, states = desired(tmp_path, text)
    assert states["web"]["corosync"]["crypto"] == "aes256/sha256"
    assert states["web"]["corosync"]["token"] == 3000
    assert states["web"]["authkey"] == "<secret: in sync>"
    conf = rec._render("web")
    assert "crypto_cipher: aes256\n" in conf and "keyfile: /etc/corosync/authkey\n" in conf


def test_links_timers_quorum_options_a_device_and_extra_keys_render_and_read_back(tmp_path):
    rec, states = desired(tmp_path, FULL)
    conf = rec._render("db")
    parsed = corosync.parse(conf)
    totem = parsed["totem"][0]
    assert [i["knet_link_priority"] for i in totem["interface"]] == ["20", "10"]
    assert totem["interface"][0]["linknumber"] == "0" and totem["interface"][0]["knet_ping_interval"] == "200"
    assert (totem["token"], totem["consensus"], totem["join"], totem["max_messages"]) == ("3000", "3600", "60", "20")
    assert totem["token_retransmits_before_loss_const"] == "10" and totem["netmtu"] == "1200"
    node = parsed["nodelist"][0]["node"][1]
    assert (node["ring0_addr"], node["ring1_addr"], node["quorum_votes"]) == ("192.0.2.12", "2001:db8:1::12", "1")
    quorum = parsed["quorum"][0]
    assert "two_node" not in quorum  # two nodes with a quorum device: the device breaks the tie
    assert (quorum["last_man_standing"], quorum["last_man_standing_window"]) == ("1", "20000")
    device = quorum["device"][0]
    assert device["votes"] == "1" and device["net"][0] == {"host": "192.0.2.30", "algorithm": "ffsplit", "tls": "off"}
    assert parsed["logging"][0]["logger_subsys"][0] == {"subsys": "QUORUM", "debug": "on"}
    assert corosync.observed_settings(parsed) == states["db"]["corosync"]
    assert states["db"]["daemons"] == {"corosync": "running", "pacemaker": "running", "qdevice": "running"}


def test_the_rendered_file_is_what_a_lab_node_got_and_reads_back_to_the_same_settings(tmp_path):
    text = CLUSTER + "  quorum: {twoNode: true, waitForAll: true}\n"
    rec, states = desired(tmp_path, text)
    conf = rec._render("web")
    assert conf == (FIXTURES / "corosync.conf.generated").read_text()
    assert conf.startswith(f"# {GENERATED_HEADER}\n")
    assert corosync.observed_settings(corosync.parse(conf)) == states["web"]["corosync"]


def test_wait_for_all_is_only_written_when_stated(tmp_path):
    rec, states = desired(tmp_path)
    conf = rec._render("web")
    assert "two_node: 1" in conf and "wait_for_all" not in conf
    # two_node implies wait_for_all in votequorum: the file without it reads back the same
    assert corosync.observed_settings(corosync.parse(conf))["quorum"] == {"twoNode": True, "waitForAll": True}
    off = corosync.render({**states["web"]["corosync"], "quorum": {"twoNode": True, "waitForAll": False}}, True)
    assert "wait_for_all: 0" in off
    assert corosync.observed_settings(corosync.parse(off))["quorum"] == {"twoNode": True, "waitForAll": False}


def test_three_nodes_have_no_two_node_quorum(tmp_path):
    text = CLUSTER.replace("  crypto", "    - {name: lb3, id: 3, address: 192.0.2.13/24}\n  crypto")
    rec, states = desired(tmp_path, text)
    assert states["web"]["corosync"]["quorum"] == {"twoNode": False, "waitForAll": False}
    assert "two_node" not in rec._render("web")


def test_the_debian_default_file_is_read_as_another_cluster():
    conf = corosync.parse((FIXTURES / "corosync.conf.debian-default").read_text())
    settings = corosync.observed_settings(conf)
    assert settings["clusterName"] == "debian"
    assert settings["crypto"] == "none"
    assert settings["nodes"] == [{"name": "node1", "id": 1, "addresses": ["127.0.0.1"]}]
    assert settings["token"] is None  # not set: Corosync's default (3000 ms)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.conf")), ids=lambda p: p.name)
def test_every_key_of_a_published_corosync_conf_is_kept_when_it_is_rendered_again(path):
    """Import → render keeps every key: the typed ones and everything else as written."""
    original = corosync.parse(path.read_text())
    settings = corosync.observed_settings(original)
    again = corosync.parse(corosync.render(settings, explicit_wait_for_all="wait_for_all" in
                                           corosync._first(original, "quorum"), header=False))

    def keys(tree, prefix=""):
        out = set()
        for name, sections in tree.items():
            for section in sections:
                for k, v in section.items():
                    out |= keys({k: v}, f"{prefix}{name}.") if isinstance(v, list) else {(f"{prefix}{name}.{k}", v)}
        return out

    lost = keys(original) - keys(again)
    # a value Corosync reads the same either way (3000 vs "3000") is not lost
    assert not {k for k in lost if k[0] not in ("totem.keyfile",)}, lost


def test_what_a_change_needs_reload_rolling_or_whole_cluster_restart(tmp_path):
    _, states = desired(tmp_path, FULL)
    before = states["db"]["corosync"]

    def with_(**changes):
        import copy

        after = copy.deepcopy(before)
        for path, value in changes.items():
            target = after
            *parents, leaf = path.split("__")
            for p in parents:
                target = target[p]
            target[leaf] = value
        return corosync.needs(before, after)

    assert with_(token=5000) == {corosync.RELOAD: ["token"]}
    assert with_(totem__consensus=6000) == {corosync.RELOAD: ["consensus"]}
    assert with_(crypto="aes128/sha256") == {corosync.RELOAD: ["crypto"]}
    assert with_(clusterName="other") == {corosync.WHOLE: ["cluster_name"]}
    assert with_(totem__link_mode="active") == {corosync.WHOLE: ["link_mode"]}
    assert with_(quorum__lastManStanding=False) == {corosync.WHOLE: ["last_man_standing"]}
    assert with_(quorum__expectedVotes=3) == {corosync.RELOAD: ["expected_votes"]}
    assert with_(quorum__device={"model": "net", "net": {"host": "192.0.2.31"}}) == {corosync.QDEVICE: ["quorum device"]}
    moved = [dict(n) for n in before["nodes"]]
    moved[0]["addresses"] = ["192.0.2.11", "2001:db8:1::21"]
    assert corosync.needs(before, {**before, "nodes": moved}) == {corosync.ROLLING: ["link 1 address of lb1"]}
    added = before["nodes"] + [{"name": "lb3", "id": 3, "addresses": ["192.0.2.13", "2001:db8:1::13"]}]
    assert corosync.needs(before, {**before, "nodes": added}) == {corosync.RELOAD: ["node lb3 added"]}
    assert corosync.needs(before, before, key_changed=True) == {corosync.RELOAD: ["authkey"]}
    lines = corosync.describe_needs(with_(clusterName="other"), running=True)
    assert "whole-cluster restart" in lines[0] and "never restarts Corosync by itself" in lines[0]


def test_observe_reads_the_file_and_says_whether_it_is_ours(tmp_path, monkeypatch):
    rec, _ = desired(tmp_path)
    node = Node("lb1", Runner(dry_run=True))
    conf = tmp_path / "corosync.conf"
    monkeypatch.setattr(cluster_mod, "COROSYNC_CONF", conf)
    monkeypatch.setattr(daemons, "running",
                        lambda node, states=None: {"corosync": False, "pacemaker": False, "qdevice": False})
    monkeypatch.setattr(daemons, "untouched_default", lambda node: False)
    assert rec.observe(node) == {"Cluster": {}}
    conf.write_text(rec._render("web"))
    observed = rec.observe(node)["Cluster"]["web"]
    assert observed["file"] == "generated"
    assert observed["daemons"] == {"corosync": "stopped", "pacemaker": "stopped"}
    conf.write_text(rec._render("web").replace("token: 1000", "token: 5000"))
    observed = rec.observe(node)["Cluster"]["web"]
    assert (observed["file"], observed["corosync"]["token"]) == ("edited", 5000)
    conf.write_text((FIXTURES / "corosync.conf.debian-default").read_text())
    assert rec.observe(node)["Cluster"]["debian"]["file"] == "not written by reconcile"


def test_the_untouched_debian_default_is_told_apart_from_an_edited_file(tmp_path):
    conf = tmp_path / "corosync.conf"
    status = tmp_path / "status"
    shipped = (FIXTURES / "corosync.conf.debian-default").read_bytes()
    conf.write_bytes(shipped)
    status.write_text(f"Package: corosync\nConffiles:\n {conf} {hashlib.md5(shipped).hexdigest()}\n"
                      " /etc/default/corosync 615971ba03bbc663df238e60fd82039e\n")
    node = Node("lb1", Runner(dry_run=True))
    # no Pacemaker answers here (unit tests run no cluster): nothing can run on it
    assert daemons.untouched_default(node, conf, status)
    conf.write_bytes(shipped.replace(b"cluster_name: debian", b"cluster_name: prod"))
    assert not daemons.untouched_default(node, conf, status)


def test_the_authkey_is_compared_here_and_only_a_token_leaves(tmp_path, monkeypatch):
    key = tmp_path / "secret.key"
    key.write_bytes(bytes(range(256)))
    text = CLUSTER.replace("  crypto: none\n", f"  authkey: {{file: {key}}}\n")
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
    # what a node publishes for the reload barrier says nothing usable about the key
    assert cluster_mod.key_digest(bytes(range(256))) == hashlib.sha256(bytes(range(256))).hexdigest()[:16]


def test_settings_of_the_example_cluster(tmp_path):
    tree = load_tree(Path(__file__).resolve().parents[2] / "desired-state")
    web = tree.get("Cluster", "web")
    settings = corosync.corosync_settings("web", web.spec)
    assert settings["token"] == 1000 and settings["quorum"] == {"twoNode": True, "waitForAll": True}
    assert settings["crypto"] == "aes256/sha256"  # the example keeps its authkey: crypto is on


def test_whether_this_machine_holds_an_address_is_read_from_proc():
    # 192.0.2.0/24 exists only inside lab namespaces, never on the machine running unit tests
    assert cluster_mod._address_is_local("127.0.0.1")
    assert not cluster_mod._address_is_local("192.0.2.11")


def test_a_node_republishes_its_crypto_digest_only_when_another_node_waits_for_it(tmp_path, monkeypatch):
    """The reload barrier: each node publishes a digest of its crypto settings and key. A
    node whose attribute went (Pacemaker restarted) shows drift only while another node
    published the same digest: nobody waits on a cluster where nobody published one."""
    from types import SimpleNamespace

    monkeypatch.setattr(cluster_mod, "AUTHKEY", tmp_path / "authkey")
    (tmp_path / "authkey").write_bytes(b"k" * 256)
    crypto = {"cipher": "aes256", "hash": "sha256"}
    mine = cluster_mod.key_digest(b"k" * 256, crypto)
    assert mine != cluster_mod.key_digest(b"k" * 256, "none") != cluster_mod.key_digest(b"", "none")

    def node(*published: tuple[str, str]) -> SimpleNamespace:
        out = "".join(f'name="{cluster_mod.KEY_ATTRIBUTE}" host="{h}" value="{v}"\n' for h, v in published)
        return SimpleNamespace(name="lb2", run=lambda argv, **kw: SimpleNamespace(rc=0, stdout=out, stderr=""))

    settings = {"crypto": crypto}
    published = ClusterReconciler._published
    assert published(settings, node(("lb1", mine), ("lb2", mine))) == "published"
    assert published(settings, node(("lb1", mine))) == "not published"  # lb1 waits for lb2
    assert published(settings, node(("lb1", mine), ("lb2", "0" * 16))) == "not published"
    assert published(settings, node()) == "published"  # made by hand: nobody waits
    assert published(settings, node(("lb1", "f" * 16))) == "published"  # lb1 has other settings: lb1's change


def test_under_systemd_a_daemon_not_started_at_boot_is_drift_and_desired_stays_the_same_everywhere(tmp_path, monkeypatch):
    """The units' boot setting is a node fact observe reads (one `systemctl show`): desired
    says plain `running` whatever machine computes it."""
    from reconcilers.base import UnitState

    rec, want = desired(tmp_path)
    node = Node("lb1", Runner(dry_run=True))
    conf = tmp_path / "corosync.conf"
    conf.write_text(rec._render("web"))
    monkeypatch.setattr(cluster_mod, "COROSYNC_CONF", conf)
    monkeypatch.setattr(cluster_mod, "AUTHKEY", tmp_path / "authkey")
    monkeypatch.setattr(cluster_mod.ClusterReconciler, "_published", staticmethod(lambda settings, node: "published"))
    states = {"corosync": UnitState("corosync.service", "loaded", "active", "enabled", "enabled"),
              "pacemaker": UnitState("pacemaker.service", "loaded", "active", "disabled", "enabled"),
              "qdevice": UnitState("corosync-qdevice.service", "loaded", "inactive", "disabled", "enabled")}
    monkeypatch.setattr(daemons, "units", lambda node: states)
    observed = rec.observe(node)["Cluster"]["web"]
    assert observed["daemons"] == {
        "corosync": "running",
        "pacemaker": "running (pacemaker.service is disabled on this node (its package enables it): not started at boot)"}
    assert want["web"]["daemons"] == {"corosync": "running", "pacemaker": "running"}
    states["pacemaker"] = UnitState("pacemaker.service", "loaded", "active", "enabled", "enabled")
    assert rec.observe(node)["Cluster"]["web"]["daemons"] == want["web"]["daemons"]
