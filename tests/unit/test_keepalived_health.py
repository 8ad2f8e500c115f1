"""keepalived's health, judged from recorded outputs: IPv6 holders found by neighbour
solicitations, a VirtualIP of several addresses, a drained node, virtual servers in IPVS;
and `validate` for another node than this machine (CI), where the node's interfaces are
not here."""
from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller.cli import main as cli
from reconcilers import netprobe
from reconcilers.base import Node, Runner, Skipped
from reconcilers.keepalived.check import missing_interfaces
from reconcilers.keepalived.health import (
    addresses_health, daemon_health, keepalived_health, parse_ip_vs, service_key, virtual_server_health,
)
from reconcilers.keepalived.reconciler import KeepalivedReconciler
from reconcilers.keepalived.vrrp import parse_json_dump

from tests.unit.test_virtual_ip import tree, vip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LB1_MAC = "2a:89:3e:2c:d4:ed"


def recorded(path: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (FIXTURES / path).read_text().splitlines()
            if line and not line.startswith("#")]


# --- IPv6 probes ------------------------------------------------------------------------------


def test_a_neighbour_advertisement_names_the_address_and_the_mac_that_holds_it():
    assert [netprobe.parse_neighbour_advert(f) for f in recorded("netprobe/ndp-replies.hex")] == [
        ("2001:db8::11", LB1_MAC), ("2001:db8::100", LB1_MAC)]
    assert netprobe.parse_arp_reply(recorded("netprobe/ndp-replies.hex")[0]) is None


def test_an_ipv6_probe_is_a_solicitation_from_the_unspecified_address_so_no_cache_learns_from_it():
    frame = netprobe.ndp_probe_frame(bytes.fromhex("a21e539a418d"), "2001:db8::100")
    assert frame[:6] == bytes.fromhex("3333ff000100")  # the solicited-node group of ::100
    assert frame[12:14] == b"\x86\xdd" and frame[14 + 6] == 58 and frame[14 + 7] == 255  # ICMPv6, hop limit 255
    assert frame[14 + 8:14 + 24] == b"\0" * 16  # source ::
    icmp = frame[14 + 40:]
    assert icmp[0] == 135 and len(icmp) == 24  # a solicitation, without a link-layer option (RFC 4862)
    pseudo = frame[14 + 8:14 + 40] + struct.pack("!I3xB", len(icmp), 58)
    assert netprobe._checksum(pseudo + icmp) == 0  # the receiver's check of our checksum
    assert netprobe.parse_neighbour_advert(frame) is None  # a solicitation is not an answer


def test_ipv6_holders_are_named_by_the_peers_own_addresses_too():
    answers = {"2001:db8::100": {LB1_MAC}, "192.0.2.11": {LB1_MAC}}
    names = netprobe.names_by_mac(answers, {"192.0.2.11": "lb1"})
    assert netprobe.holders(False, "lb2", answers["2001:db8::100"], names) == ["lb1"]


# --- a VirtualIP of several addresses ------------------------------------------------------------


def test_every_address_held_once_is_healthy_and_says_who_holds_each():
    h = addresses_health([("192.0.2.100/24", ["lb1"], "BACKUP"), ("2001:db8::100/64", ["lb2"], "MASTER")], "lb2")
    assert (h.status, h.reason) == ("Healthy", "HeldOnce")
    assert h.message == "192.0.2.100 held by lb1; this node is BACKUP; 2001:db8::100 held by lb2 (this node); this node is MASTER"


def test_addresses_held_by_the_same_node_are_said_once():
    h = addresses_health([("192.0.2.150/24", ["lb1"], "BACKUP"), ("2001:db8::150/64", ["lb1"], "BACKUP")], "lb2")
    assert h.message == "192.0.2.150, 2001:db8::150 held by lb1; this node is BACKUP"


def test_one_address_on_two_nodes_is_a_split_brain_even_when_another_is_held_by_nobody():
    h = addresses_health([("192.0.2.100/24", [], None), ("2001:db8::100/64", ["lb1", "lb2"], "MASTER")], "lb1")
    assert (h.status, h.reason) == ("Degraded", "SplitBrain") and "lb1 and lb2" in h.message
    h = addresses_health([("192.0.2.100/24", [], None), ("2001:db8::100/64", ["lb1"], "MASTER")], "lb1")
    assert (h.reason, h.message) == ("NotHeld", "192.0.2.100: no node answers for 192.0.2.100")


def test_a_single_address_reads_as_before():
    assert addresses_health([("192.0.2.100/24", ["lb1"], "BACKUP")], "lb2").message == "held by lb1; this node is BACKUP"


# --- keepalived itself ---------------------------------------------------------------------------


def test_a_drained_node_is_degraded_on_purpose_and_says_how_to_undo_it():
    dump = parse_json_dump((FIXTURES / "keepalived" / "json-master.json").read_text())
    h = keepalived_health(True, dump, [SimpleNamespace(name="web-vip")], drained=True)
    assert (h.status, h.reason) == ("Degraded", "Drained") and "reconcile undrain" in h.message
    assert daemon_health(True, dump, True, drained=True).reason == "Drained"


def test_the_keepalived_object_is_the_daemon_running_and_answering():
    dump = parse_json_dump((FIXTURES / "keepalived" / "json-master.json").read_text())
    assert daemon_health(True, dump, True).reason == "Running"
    assert daemon_health(True, None, False).reason == "Running", "no VRRP instance: no dump to ask for"
    assert daemon_health(True, None, True).reason == "NotResponding"
    assert daemon_health(False, None, True).reason == "NotRunning"


# --- virtual servers ------------------------------------------------------------------------------

# Composed after the kernel's format (net/netfilter/ipvs/ip_vs_ctl.c, ip_vs_info_seq_show):
# this machine's kernel has no IPVS to record it from.
IP_VS = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  C0000235:0035 wlc
  -> C000020B:0035      Route   2      0          0
  -> C000020C:0035      Route   0      0          0
TCP  [2001:0db8:0000:0000:0000:0000:0000:0050]:0050 rr persistent 50 FFFFFFFF
  -> [2001:0db8:0000:0000:0000:0000:0000:0011]:0050      Masq    1      3          1
FWM  00000007 rr
"""


def test_the_ipvs_table_reads_as_services_and_their_real_servers():
    table = parse_ip_vs(IP_VS)
    assert table[("UDP", "192.0.2.53:53")] == [("192.0.2.11:53", 2), ("192.0.2.12:53", 0)]
    assert table[("TCP", "[2001:db8::50]:80")] == [("[2001:db8::11]:80", 1)]
    assert table[("FWM", "7")] == []
    assert service_key("192.0.2.53", 53, "udp", None) == ("UDP", "192.0.2.53:53")
    assert service_key(None, None, "TCP", 7) == ("FWM", "7")


def test_a_virtual_server_is_judged_by_the_real_servers_taking_connections():
    table = parse_ip_vs(IP_VS)
    h = virtual_server_health(("UDP", "192.0.2.53:53"), 2, table, True)
    assert (h.status, h.reason) == ("Degraded", "ServersDown") and "1 of 2" in h.message
    assert virtual_server_health(("TCP", "[2001:db8::50]:80"), 1, table, True).reason == "ServersUp"
    assert virtual_server_health(("FWM", "7"), 2, table, True).reason == "NoServerUp"
    assert virtual_server_health(("TCP", "192.0.2.99:80"), 1, table, True).reason == "NotInIPVS"
    assert virtual_server_health(("TCP", "192.0.2.99:80"), 1, None, True).reason == "NoIPVS"
    assert virtual_server_health(("UDP", "192.0.2.53:53"), 2, table, False).reason == "NotRunning"


# --- validate for another node -----------------------------------------------------------------------


def test_keepalived_t_complaining_only_of_missing_interfaces_is_told_apart():
    missing, rest = missing_interfaces((FIXTURES / "keepalived" / "keepalived-t-missing-interface.stderr")
                                       .read_text().splitlines())
    assert missing == ["eth9"]
    assert [r for r in rest if "Non-existent interface" in r] == [] and any("invalid number" in r for r in rest)


def test_validate_for_another_node_skips_what_only_that_node_can_tell(tmp_path, monkeypatch):
    """In CI the node's interfaces and its policy file are not on this machine: skipped, said why."""
    monkeypatch.setenv("RECONCILE_POLICY", str(tmp_path / "absent-policy.yaml"))
    t = tree(tmp_path, vip(extra="  interface: rcn9\n",
                           keepalived="routerId: 51\nnotify: {master: {command: [/usr/bin/logger, up], user: root}}"))
    node = Node("lb1", Runner(dry_run=True), tmp_path / "state", local=False)
    rec = KeepalivedReconciler()
    rec.desired(t, node)
    found = rec.validate(node)
    assert found and all(isinstance(f, Skipped) for f in found), found
    assert any("capability 'notify'" in f and "decided on lb1" in f for f in found)
    assert any("interface rcn9 is lb1's and not on this machine" in f for f in found)
    local = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    refused = rec.validate(local)
    assert refused and not any(isinstance(f, Skipped) for f in refused), "on the node itself it is a refusal"


# --- drain ------------------------------------------------------------------------------------------


def test_drain_acts_on_this_machine_only(monkeypatch, capsys):
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")
    assert cli(["drain", "lb2"]) == 1
    assert "drain acts on this machine only: this host is 'lb1', not 'lb2'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["drain", "undrain"])
def test_drain_and_undrain_follow_every_commands_conventions(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli([command, "--help"])
    assert exit_.value.code == 0 and "exit codes:\n  0  done" in capsys.readouterr().out
    assert cli([command, "--nope"]) == 1
