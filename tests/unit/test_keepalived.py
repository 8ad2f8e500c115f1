"""The keepalived package's pure parts: the language, the parsers of outputs recorded from
the real tools, rendering, refusals pinned on objects, and drain's file.

Fixtures in tests/fixtures/keepalived/ were recorded in lab nodes (keepalived 2.2.7,
iproute2 6.1): `json-*.json` are /tmp/keepalived.json after the JSON dump signal,
`ip-addr-*.json` are `ip -j addr`, `keepalived-t-*.stderr` is `keepalived -t` refusing a file,
`vrrp-adverts-*.hex` are adverts a raw socket received.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from reconcilers.base import GENERATED_HEADER
from reconcilers.keepalived.check import attribute
from reconcilers.keepalived.conf import (
    Rendered, SyntaxProblem, UnsafeValue, command_words, keepalived_word, parse, render_file, split_command, write,
)
from reconcilers.keepalived.model import Instance, instances_in, master_down_seconds, state_of
from reconcilers.keepalived.reconciler import _without, runtime, sections_of
from reconcilers.keepalived.vrrp import holders, parse_ip_addr, parse_json_dump, parse_vrrp_packet

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


WEB = Instance(name="web-vip", interface="eth0", router_id=51, priority=150, advert_interval=0.25, version=3,
               family=4, addresses=("192.0.2.100/24",), excluded=(), unicast_peers=("192.0.2.12",),
               nopreempt=False, preempt_delay=0.0)


def with_(inst: Instance, **change) -> Instance:
    return Instance(**{**inst.__dict__, **change})


# --- the language --------------------------------------------------------------------------


def test_parse_reads_blocks_comments_quotes_and_braces_on_one_line():
    stmts = parse('vrrp_script chk { # check\n  script "/bin/x a#b \'c d\'"  ! done\n  weight -2 }\n'
                  "vrrp_instance VI_1\n{\n  track_script {\n chk\n} }\n")
    assert [s.words for s in stmts] == [["vrrp_script", "chk"], ["vrrp_instance", "VI_1"]]
    assert stmts[0].value("script") == "/bin/x a#b 'c d'" and stmts[0].value("weight") == "-2"
    assert stmts[1].first("track_script").body[0].words == ["chk"]
    assert stmts[0].first("weight").line == 3


def test_parse_refuses_an_unmatched_quote():
    with pytest.raises(SyntaxProblem):
        parse('script "/bin/x\n')


def test_words_are_quoted_only_when_needed_and_refused_when_quoting_cannot_help():
    assert keepalived_word("192.0.2.1/24") == "192.0.2.1/24"
    assert keepalived_word("a b") == '"a b"' and keepalived_word("{") == '"{"' and keepalived_word("#x") == '"#x"'
    assert keepalived_word("") == '""'
    for bad in ('a"b', "a\\b", "${_PWD}", "a\nb", "x" * 300):
        with pytest.raises(UnsafeValue):
            keepalived_word(bad)


def test_a_script_argv_round_trips_through_keepalived_quoting():
    argv = ["/usr/bin/logger", "-t", "ka", "now MASTER", "", "a#b"]
    text = command_words(argv)
    assert text == "/usr/bin/logger -t ka 'now MASTER' '' 'a#b'"
    assert split_command(text) == argv
    with pytest.raises(UnsafeValue):
        command_words(["/bin/echo", "it's"])


def test_write_and_parse_are_inverse_and_markers_name_owners():
    rendered = render_file(["# header"], [("VirtualIP/a", parse("vrrp_instance a {\n priority 1\n}\n")),
                                          ("VirtualIP/b,c", parse("vrrp_instance b { }"))])
    assert isinstance(rendered, Rendered)
    stmts = parse(rendered.text)
    assert [(s.owner, s.words) for s in stmts] == [("VirtualIP/a", ["vrrp_instance", "a"]),
                                                    ("VirtualIP/b,c", ["vrrp_instance", "b"])]
    priority_line = rendered.text.splitlines().index("    priority 1") + 1
    assert rendered.owner_of(priority_line) == "VirtualIP/a"
    assert write(parse(rendered.text)) == write(stmts)


# --- plan state ------------------------------------------------------------------------------


def test_state_reads_like_the_file_and_masks_secrets():
    stmts = parse("vrrp_instance VI_1 {\n priority 150\n nopreempt\n authentication {\n auth_type PASS\n"
                  " auth_pass hunter22\n }\n virtual_ipaddress {\n 192.0.2.1/24 dev eth0\n 192.0.2.2/24\n }\n"
                  " notify_master /a\n notify_master /b\n}\n")
    state = state_of(stmts, lambda k, v: "<masked>")
    inst = state["vrrp_instance VI_1"]
    assert inst["priority"] == "150" and inst["nopreempt"] is True
    assert inst["authentication"] == {"auth_type": "PASS", "auth_pass": "<masked>"}
    assert inst["virtual_ipaddress"] == ["192.0.2.1/24 dev eth0", "192.0.2.2/24"]
    assert inst["notify_master"] == ["/a", "/b"], "a repeated keyword is a list, in order"
    assert "hunter22" not in repr(state)


def test_instance_facts_from_statements_and_the_defaults_keepalived_assumes():
    [v4, v6] = instances_in(parse(
        "vrrp_instance a { interface eth0\n virtual_router_id 7\n virtual_ipaddress { 192.0.2.1 }\n"
        " unicast_peer { 192.0.2.12 }\n nopreempt }\n"
        "vrrp_instance b { interface eth0\n virtual_router_id 7\n priority 90\n advert_int 0.5\n"
        " virtual_ipaddress { 2001:db8::1/64 } }\n"))
    assert (v4.family, v4.version, v4.priority, v4.advert_interval, v4.nopreempt) == (4, 2, 100, 1.0, True)
    assert v4.unicast_peers == ("192.0.2.12",) and v4.ips() == ("192.0.2.1",)
    assert (v6.family, v6.version, v6.priority, v6.advert_interval) == (6, 3, 90, 0.5)


def test_master_down_interval_follows_rfc_5798():
    assert round(master_down_seconds(WEB, 100), 3) == round(3 * 0.25 + 156 / 256 * 0.25, 3)


# --- what runs ------------------------------------------------------------------------------


def test_json_dump_of_a_master_gives_its_state_and_configuration():
    inst = parse_json_dump(fixture("json-master.json"))["web-vip"]
    assert (inst.state_name, inst.router_id, inst.base_priority, inst.advert_interval) == ("MASTER", 51, 150, 0.25)
    assert inst.addresses == ("192.0.2.100/24",) and not inst.nopreempt and inst.preempt_delay == 0
    assert inst.runs(WEB)


def test_json_dump_of_a_backup_and_of_a_tracked_instance():
    assert parse_json_dump(fixture("json-backup.json"))["web-vip"].state_name == "BACKUP"
    tracked = parse_json_dump(fixture("json-tracked-backup.json"))["web-vip"]
    assert tracked.base_priority == 150 and tracked.effective_priority == 99


def test_running_instance_differs_from_a_changed_configuration():
    inst = parse_json_dump(fixture("json-master.json"))["web-vip"]
    for change in ({"priority": 200}, {"advert_interval": 0.1}, {"router_id": 52}, {"nopreempt": True},
                   {"preempt_delay": 5.0}, {"addresses": ("192.0.2.101/24",)}):
        assert not inst.runs(with_(WEB, **change)), change


def test_a_half_written_dump_is_refused():
    text = fixture("json-master.json")
    with pytest.raises(ValueError):
        parse_json_dump(text[: len(text) // 2])


def test_ip_addr_finds_the_vip_on_the_master_only_without_link_local_addresses():
    master, backup = parse_ip_addr(fixture("ip-addr-master.json")), parse_ip_addr(fixture("ip-addr-backup.json"))
    assert master["192.0.2.100/24"] == {"eth0"} and "192.0.2.100/24" not in backup
    assert not [a for a in master if a.startswith("fe80:")], "link-local addresses are never VIPs"
    assert holders(master, "192.0.2.100/32") == {"eth0"}, "the same IP with another prefix is the same IP"


def test_vrrp_adverts_captured_on_a_peer_give_source_router_id_and_priority():
    # Two adverts lb2 (master, priority 100) sent to lb1, as a raw IPv4 socket on lb1 got them.
    packets = [bytes.fromhex(line) for line in fixture("vrrp-adverts-from-lb2.hex").split()]
    assert [parse_vrrp_packet(p) for p in packets] == [("192.0.2.12", 52, 100), ("192.0.2.12", 51, 100)]
    assert parse_vrrp_packet(packets[0][:22]) is None, "truncated"
    assert parse_vrrp_packet(b"\x45" + packets[0][1:9] + b"\x06" + packets[0][10:]) is None, "not VRRP (TCP)"


# --- observed run-time state ---------------------------------------------------------------------


def test_in_sync_master_and_backup_are_running_with_their_address_where_keepalived_puts_it():
    master = runtime("VirtualIP", [WEB], True, parse_json_dump(fixture("json-master.json")),
                     parse_ip_addr(fixture("ip-addr-master.json")))
    backup = runtime("VirtualIP", [with_(WEB, priority=100)], True, parse_json_dump(fixture("json-backup.json")),
                     parse_ip_addr(fixture("ip-addr-backup.json")))
    ok = {"keepalived": "running", "staleAddress": False, "vipPresentOnMaster": True}
    assert master == ok and backup == ok, "holding the address or not is keepalived's business"


def test_split_brain_guard_flags_an_address_left_by_a_dead_keepalived():
    seen = runtime("VirtualIP", [WEB], False, None, parse_ip_addr(fixture("ip-addr-stale.json")))
    assert seen == {"keepalived": "stopped", "staleAddress": True, "vipPresentOnMaster": True}
    clean = runtime("VirtualIP", [WEB], False, None, parse_ip_addr(fixture("ip-addr-backup.json")))
    assert clean["staleAddress"] is False


def test_master_without_its_address_reload_needed_and_not_responding():
    dump = parse_json_dump(fixture("json-master.json"))
    assert runtime("VirtualIP", [WEB], True, dump, parse_ip_addr(fixture("ip-addr-master-missing-vip.json"))
                   )["vipPresentOnMaster"] is False
    assert runtime("VirtualIP", [with_(WEB, priority=200)], True, dump,
                   parse_ip_addr(fixture("ip-addr-master.json")))["keepalived"] == "reload-needed"
    assert runtime("VirtualIP", [WEB], True, None, {})["keepalived"] == "not-responding"
    assert runtime("VirtualServer", [], True, None, {}) == {"keepalived": "running"}


def test_a_foreign_file_has_no_managed_sections_and_a_generated_one_is_read_by_owner():
    generated, sections = sections_of(fixture("keepalived-foreign.conf"))
    assert not generated and sections == {}
    text = render_file([f"# {GENERATED_HEADER}"], [("VirtualIP/VI_1", parse("vrrp_instance VI_1 { priority 1 }"))]).text
    generated, sections = sections_of(text)
    assert generated and list(sections) == ["VirtualIP/VI_1"]
    assert sections_of(None) == (True, {})


def test_an_address_moving_between_instances_is_left_out_of_the_first_file():
    text = render_file([], [("VirtualIP/a", parse("vrrp_instance a {\n virtual_ipaddress {\n 192.0.2.100/24\n"
                                                   " 192.0.2.101/24\n }\n}\nvrrp_instance b {\n virtual_ipaddress"
                                                   " {\n 192.0.2.102/24\n }\n}\n")),
                            ("Keepalived/k", parse("vrrp_sync_group G {\n group {\n a\n b\n }\n}\n"))]).text
    first = _without(text, {"192.0.2.100", "192.0.2.102"})
    assert "192.0.2.100/24" not in first and "192.0.2.101/24" in first
    assert "vrrp_instance b" not in first, "an instance left without an address is dropped"
    assert [s.body[0].body for s in parse(first) if s.keyword == "vrrp_sync_group"][0][0].words == ["a"]


# --- refusals pinned on objects -------------------------------------------------------------------


def test_keepalived_t_complaints_are_pinned_on_the_object_whose_line_or_name_they_carry():
    rendered = render_file(["# h"], [
        ("Keepalived/lb1", parse("global_defs {\n router_id lb1\n}\n")),
        ("VirtualIP/VI_1", parse("vrrp_instance VI_1 {\n interface eth9\n}\n")),
        ("VirtualServer/dns", parse("virtual_server 192.0.2.100 53 {\n lb_algo wlc\n}\n")),
    ])
    line = rendered.text.splitlines().index("    interface eth9") + 1
    problems = [f"(/tmp/x.conf: Line {line}) WARNING - interface eth9 for vrrp_instance VI_1 doesn't exist",
                "(VI_1) Unknown interface!",
                "Virtual server [192.0.2.100]:tcp:53: no forwarding method set, setting default NAT",
                "something without a place"]
    refusals = attribute(problems, rendered, {"VI_1": "VirtualIP/VI_1"}, {("192.0.2.100", "53"): "VirtualServer/dns"})
    by = {r.objects: r.message for r in refusals}
    assert "eth9" in by[(("VirtualIP", "VI_1"),)] and "Unknown interface" in by[(("VirtualIP", "VI_1"),)]
    assert "forwarding method" in by[(("VirtualServer", "dns"),)]
    assert () not in by and "without a place" in by[(("VirtualIP", "VI_1"),)], \
        "a summary naming nothing goes with the objects named (the rest is checked again)"
    [alone] = attribute(["something without a place"], rendered, {}, {})
    assert alone.objects == () and "without a place" in alone.message, "alone, it refuses the whole file"


def test_keepalived_refusal_fixture_names_the_interface():
    err = fixture("keepalived-t-missing-interface.stderr")
    assert "Non-existent interface" in err and "eth9" in err
