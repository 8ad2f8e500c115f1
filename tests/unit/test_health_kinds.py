"""Each kind's health, judged from outputs recorded from the real tools (tests/fixtures)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconcilers import netprobe
from reconcilers.lxc.health import container_health, init_of, parse_proc_stat
from reconcilers.domain.adcli import membership_accepted
from reconcilers.domain.health import join_health, parse_getent, resolvable_names
from reconcilers.haproxy.health import backend_health, frontend_health, parse_stat_rows, server_state
from reconcilers.keepalived.vrrp import parse_json_dump
from reconcilers.keepalived.health import keepalived_health, vip_health
from reconcilers.pacemaker.tools import parse_crm_mon
from reconcilers.pacemaker.health import Snapshot, address_health, cluster_health, parse_resources, resource_health

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(path: str) -> str:
    return (FIXTURES / path).read_text()


# --- ARP probes ------------------------------------------------------------------------------

LB1_MAC, LB2_MAC = "6a:ba:ce:f1:a9:80", "f6:39:aa:5b:04:1c"


def recorded_replies() -> list[bytes]:
    return [bytes.fromhex(line) for line in fixture("netprobe/arp-replies.hex").splitlines()
            if line and not line.startswith("#")]


def test_an_arp_reply_names_the_address_and_the_mac_that_holds_it():
    assert [netprobe.parse_arp_reply(f) for f in recorded_replies()] == [
        ("192.0.2.100", LB1_MAC), ("192.0.2.11", LB1_MAC)]


def test_a_probe_asks_without_a_sender_address_so_no_cache_learns_from_it():
    frame = netprobe.arp_probe_frame(bytes.fromhex(LB2_MAC.replace(":", "")), "192.0.2.100")
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    assert frame[20:22] == b"\x00\x01"  # a request
    assert frame[28:32] == b"\0\0\0\0"  # sender 0.0.0.0 (RFC 5227 probe)
    assert frame[38:42] == bytes([192, 0, 2, 100])
    assert netprobe.parse_arp_reply(frame) is None  # a request is not a reply


def test_replying_macs_are_named_by_the_peers_own_addresses():
    answers = {"192.0.2.100": {LB1_MAC}, "192.0.2.11": {LB1_MAC}}
    names = netprobe.names_by_mac(answers, {"192.0.2.11": "lb1"})
    assert netprobe.holders(False, "lb2", answers["192.0.2.100"], names) == ["lb1"]
    assert netprobe.holders(True, "lb2", answers["192.0.2.100"], names) == ["lb2", "lb1"]
    assert netprobe.holders(False, "lb2", {"02:00:00:00:00:01"}, names) == ["an unknown host (02:00:00:00:00:01)"]


# --- keepalived VIPs --------------------------------------------------------------------------


def test_a_vip_held_by_exactly_one_node_is_healthy_and_says_which():
    h = vip_health("192.0.2.100/24", ["lb1"], "lb2", "BACKUP")
    assert (h.status, h.reason) == ("Healthy", "HeldOnce")
    assert "held by lb1" in h.message and "this node is BACKUP" in h.message
    assert "this node" in vip_health("192.0.2.100/24", ["lb2"], "lb2").message


def test_a_vip_held_by_two_nodes_is_a_split_brain():
    h = vip_health("192.0.2.100/24", ["lb1", "lb2"], "lb1")
    assert (h.status, h.reason) == ("Degraded", "SplitBrain")
    assert "lb1 and lb2" in h.message


def test_a_vip_held_by_nobody_is_degraded():
    assert vip_health("192.0.2.100/24", [], "lb1").reason == "NotHeld"


def test_keepalived_running_its_instances_is_healthy():
    dump = parse_json_dump(fixture("keepalived/json-master.json"))
    inst = [SimpleNamespace(name="web-vip")]
    h = keepalived_health(True, dump, inst)
    assert (h.status, h.reason) == ("Healthy", "Running") and "web-vip MASTER (priority 150)" in h.message


def test_a_failed_tracked_check_lowering_the_priority_is_degraded():
    dump = parse_json_dump(fixture("keepalived/json-tracked-backup.json"))
    h = keepalived_health(True, dump, [SimpleNamespace(name="web-vip")])
    assert (h.status, h.reason) == ("Degraded", "InstanceFault") and "150 → 99" in h.message


def test_keepalived_stopped_or_not_answering_is_degraded():
    inst = [SimpleNamespace(name="web-vip")]
    assert keepalived_health(False, None, inst).reason == "NotRunning"
    assert keepalived_health(True, None, inst).reason == "NotResponding"


# --- Pacemaker --------------------------------------------------------------------------------


def snap(name: str) -> Snapshot:
    text = fixture(f"pacemaker/{name}")
    return Snapshot(parse_crm_mon(text), parse_resources(text))


DB = {"agent": "ocf:heartbeat:Dummy", "meta": {}, "clone": False, "location": [],
      "colocation": [{"with": "db-vip", "score": "INFINITY"}], "startAfter": ["db-vip"]}
DB_VIP = {"agent": "ocf:heartbeat:IPaddr2", "meta": {}, "clone": False, "location": [], "colocation": [],
          "startAfter": [], "params": {"ip": "192.0.2.110", "cidr_netmask": "24", "nic": "eth0"}}


def test_a_quorate_cluster_with_every_member_online_is_healthy():
    h = cluster_health(snap("crm_mon_running.xml").status, ["lb1", "lb2"], {"corosync": True, "pacemaker": True})
    assert (h.status, h.reason) == ("Healthy", "Quorate") and "DC lb1" in h.message and "2/2" in h.message


def test_a_partition_without_quorum_is_degraded_and_names_who_is_offline():
    h = cluster_health(snap("crm_mon_no_quorum.xml").status, ["lb1", "lb2"], {"corosync": True, "pacemaker": True})
    assert (h.status, h.reason) == ("Degraded", "NoQuorum")
    assert "online lb1" in h.message and "offline lb2" in h.message


def test_a_cluster_without_a_dc_or_daemons_is_degraded():
    assert cluster_health(snap("crm_mon_no_dc.xml").status, ["lb1", "lb2"],
                          {"corosync": True, "pacemaker": True}).reason == "NoDC"
    h = cluster_health(None, ["lb1"], {"corosync": False, "pacemaker": False})
    assert (h.reason, h.message) == ("NotRunning", "corosync and pacemaker not running on this node")


def test_a_resource_running_next_to_what_it_is_colocated_with_is_healthy():
    s = snap("crm_mon_running.xml")
    h = resource_health("db", DB, s)
    assert (h.status, h.reason, h.message) == ("Healthy", "Running", "runs on lb1")


def test_a_resource_stopped_for_lack_of_quorum_says_so():
    h = resource_health("db", DB, snap("crm_mon_no_quorum.xml"))
    assert (h.status, h.reason) == ("Degraded", "NotRunning") and "no quorum" in h.message


def test_a_resource_away_from_its_colocated_partner_or_preferred_node_is_degraded():
    s = snap("crm_mon_running.xml")
    s.resources["db"].nodes = ["lb2"]
    assert resource_health("db", DB, s).reason == "NotWithColocated"
    pinned = dict(DB_VIP, location=[{"node": "lb2", "score": "100"}])
    h = resource_health("db-vip", pinned, s)
    assert (h.reason, h.message) == ("NotWhereIntended", "runs on lb1; its location constraints prefer lb2, which is online")


def test_a_stopped_resource_whose_manifest_says_stopped_is_healthy():
    s = snap("crm_mon_no_quorum.xml")
    h = resource_health("db", dict(DB, meta={"target-role": "Stopped"}), s)
    assert (h.status, h.reason) == ("Healthy", "StoppedAsIntended")


def test_an_at_most_once_resource_on_two_nodes_is_degraded():
    s = snap("crm_mon_running.xml")
    s.resources["db-vip"].nodes = ["lb1", "lb2"]
    assert resource_health("db-vip", DB_VIP, s).reason == "RunningTwice"


def test_an_unknown_resource_is_not_in_the_cluster_yet():
    assert resource_health("web", DB, snap("crm_mon_formed_no_resources.xml")).reason == "NotInCluster"


def test_an_ipaddr2_address_must_answer_from_the_node_pacemaker_runs_it_on():
    base = resource_health("db-vip", DB_VIP, snap("crm_mon_running.xml"))
    assert address_health(base, ["lb1"], ["lb1"]).status == "Healthy"
    assert address_health(base, ["lb1"], ["lb1", "lb2"]).reason == "SplitBrain"
    assert address_health(base, ["lb1"], []).reason == "NotAnswering"
    assert address_health(base, ["lb1"], ["lb2"]).reason == "HeldElsewhere"


# --- HAProxy ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows():
    return parse_stat_rows(fixture("haproxy/show-stat.csv"))


def test_a_listening_frontend_is_healthy(rows):
    h = frontend_health("web", rows, ["192.0.2.100:80"])
    assert (h.status, h.reason, h.message) == ("Healthy", "Listening", "listening on 192.0.2.100:80")
    assert frontend_health("nope", rows, []).reason == "NotLoaded"
    assert frontend_health("web", None, []).reason == "NotRunning"


def test_server_states_as_the_checks_report_them(rows):
    assert {sv: server_state(r) for sv, r in rows["legacy"].items() if sv not in ("FRONTEND", "BACKEND")} == \
        {"dead": "DOWN", "l1": "MAINT", "l2": "UP"}


def test_a_server_down_degrades_its_backend_and_says_why(rows):
    servers = {"dead": {"state": "ready"}, "l1": {"state": "maint"}, "l2": {"state": "ready"}}
    h = backend_health("legacy", rows, {"servers": servers})
    assert (h.status, h.reason) == ("Degraded", "ServersDown")
    assert h.message == "dead DOWN (L4CON); 1/3 UP; l1 MAINT (as in git)"
    rows = {"legacy": {k: v for k, v in rows["legacy"].items() if k != "l2"}}
    assert backend_health("legacy", rows, {"servers": servers}).reason == "NoServerUp"


def test_a_drained_server_is_a_fault_unless_git_or_an_allowed_operator_did_it(rows):
    servers = {f"s{i}": {"state": "ready"} for i in range(1, 5)}
    h = backend_health("app", rows, {"servers": servers})
    assert (h.status, h.reason) == ("Degraded", "ServersDown") and "s2 DRAIN" in h.message and "3/4 UP" in h.message
    h = backend_health("app", rows, {"servers": servers}, operator_state=True)
    assert (h.status, h.reason) == ("Healthy", "ServersUp") and "s2 DRAIN (set at run time)" in h.message


# --- containers -------------------------------------------------------------------------------


def test_the_init_of_a_running_container_is_read_from_proc(tmp_path):
    (tmp_path / "4840").mkdir()
    (tmp_path / "4840" / "stat").write_text(fixture("lxc/proc-stat-ct1-init"))
    assert parse_proc_stat(fixture("lxc/proc-stat-ct1-init")) == ("httpd", "S")
    assert init_of("4840:383386", str(tmp_path)) == (4840, "httpd", "S")
    assert init_of("4840:999", str(tmp_path)) is None  # the PID was reused by another process
    assert init_of("4841:383386", str(tmp_path)) is None


def test_a_running_container_whose_init_answers_is_healthy():
    h = container_health({"state": "running"}, {"state": "running"}, (4840, "httpd", "S"))
    assert (h.status, h.reason) == ("Healthy", "Running") and "httpd (pid 4840)" in h.message


@pytest.mark.parametrize("have,init,reason", [
    ({"state": "running"}, (4840, "httpd", "T"), "InitStopped"),
    ({"state": "running"}, (4840, "httpd", "Z"), "InitDead"),
    ({"state": "running"}, None, "InitGone"),
    ({"state": "frozen"}, (4840, "httpd", "S"), "Frozen"),
    ({"state": "stopped"}, None, "NotRunning"),
    (None, None, "NotDefined"),
])
def test_a_container_that_does_not_work_is_degraded(have, init, reason):
    h = container_health({"state": "running"}, have, init)
    assert (h.status, h.reason) == ("Degraded", reason)


def test_a_pacemaker_placed_container_stopped_here_is_not_a_fault():
    assert container_health({"state": None}, {"state": "stopped"}, None).reason == "DefinedHere"


# --- domain join ------------------------------------------------------------------------------


def recorded_testjoin(case: str) -> tuple[int, str]:
    lines = fixture(f"ad/testjoin-{case}.stderr").splitlines()
    return int(lines[-1].split("=")[1]), "\n".join(lines[:-1])


def test_a_join_ad_accepts_with_names_resolving_is_healthy():
    h = join_health(membership_accepted(*recorded_testjoin("valid")), "", "LB1", "corp.example.test", [], 3)
    assert (h.status, h.reason) == ("Healthy", "JoinValid") and "AD accepts LB1$" in h.message


def test_a_membership_ad_revoked_is_degraded_with_what_to_do():
    h = join_health(membership_accepted(*recorded_testjoin("account-deleted")), "", "LB2", "corp.example.test", [], 3)
    assert (h.status, h.reason) == ("Degraded", "JoinRejected") and "krb5.keytab" in h.message


def test_names_that_do_not_resolve_are_degraded():
    lines = fixture("ad/getent-group-partial.stdout").splitlines()
    found = parse_getent("\n".join(lines[:-1]))
    assert found == {"root", "adm"}
    h = join_health(True, "", "LB1", "corp.example.test", ["group 'nosuchgroup'"], 3)
    assert (h.status, h.reason) == ("Degraded", "NamesNotResolving") and "nosuchgroup" in h.message


def test_the_names_to_resolve_are_the_join_user_and_the_manifests_groups():
    spec = SimpleNamespace(domain="corp.example.test", user="Administrator", allowGroups=["App-Admins", "web users"],
                           sudoGroups=["app-admins"], fullyQualifiedNames=False)
    assert resolvable_names(spec) == (["administrator"], ["app-admins", "web users"])
    spec.fullyQualifiedNames = True
    assert resolvable_names(spec)[0] == ["administrator@corp.example.test"]


def test_right_after_a_change_the_checks_verdict_is_pending():
    from reconcilers.haproxy.health import checks_pending

    check = {"type": "http", "interval": "1s", "fall": 3}
    assert checks_pending(100.0, check, now=101.0) == 3.0  # (fall + 1) × interval after the change
    assert checks_pending(100.0, check, now=104.5) == 0.0
    assert checks_pending(None, check, now=101.0) == 0.0
    assert checks_pending(100.0, {"type": "none"}, now=100.0) == 0.0


def test_checks_take_as_long_as_the_slowest_checked_server_after_its_default_server_words():
    from reconcilers.haproxy.health import check_timing
    from reconcilers.haproxy.parse import proxy_state

    lines = ["default-server inter 500ms fall 2", "server a 192.0.2.1:80 check", "server b [2001:db8::2]:80 check "
             "inter 3s", "server c 192.0.2.3:80"]
    state = proxy_state("backend", None, lines, ["fall", "5", "inter", "1s"])
    default_server = ["fall", "5", "inter", "1s", "inter", "500ms", "fall", "2"]  # inherited, then the section's
    assert check_timing(state["servers"], default_server) == {"type": "check", "interval": "3000ms", "fall": 2}
    assert check_timing({"c": state["servers"]["c"]}, default_server) == {"type": "none"}
    assert check_timing({"a": {"check": True, "options": ""}}, []) == {"type": "check", "interval": "2000ms", "fall": 3}


def test_an_unresolved_server_template_slot_is_not_a_failing_server():
    rows = {"be_dns": {"BACKEND": {"status": "UP"}, "web1": {"status": "UP"}, "web2": {"status": "MAINT"}}}
    desired = {"lines": ["server-template web 2 app.example.test:80 check resolvers dc"], "servers": {}}
    h = backend_health("be_dns", rows, desired)
    assert (h.status, h.reason, h.message) == ("Healthy", "ServersUp", "1/1 UP")
    rows["be_dns"]["web1"] = {"status": "MAINT"}
    h = backend_health("be_dns", rows, desired)
    assert (h.reason, h.message) == ("NoServerUp", "no server serves: no name of its server-template resolved")


def test_a_backend_without_servers_answers_by_itself():
    rows = {"be_deny": {"BACKEND": {"status": "UP"}}}
    h = backend_health("be_deny", rows, {"lines": ["http-request deny"], "servers": {}})
    assert (h.status, h.reason) == ("Healthy", "NoServers")


def test_crm_mon_failing_says_why_in_its_own_words_not_its_last_xml_line():
    from reconcilers.pacemaker.health import crm_mon_error
    recorded = (FIXTURES / "pacemaker" / "crm_mon_not_connected.xml").read_text()  # lab node, pacemaker stopped
    why = crm_mon_error(recorded, "", 102)
    assert why == ("error: Could not connect to launcher: Connection refused; "
                   "crm_mon: Connection to cluster failed: Connection refused")
    assert crm_mon_error("", "crm_mon: command timed out\n", 124) == "crm_mon: command timed out"
    assert crm_mon_error("", "", 1) == "exit 1"
