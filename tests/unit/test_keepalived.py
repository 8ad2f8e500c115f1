"""keepalived helpers: the parsers on outputs recorded from the real tools, and the renderer.

Fixtures in tests/fixtures/keepalived/ were recorded in lab nodes (keepalived 2.2.7,
iproute2 6.1): `json-*.json` are /tmp/keepalived.json after the JSON dump signal,
`ip-addr-*.json` are `ip -j addr`, `keepalived-t-*.stderr` is `keepalived -t` refusing a file.
"""
from __future__ import annotations

from pathlib import Path

from reconcilers.base import GENERATED_HEADER
from reconcilers.keepalived import (
    TRACK_SCRIPT, VrrpInstance, holders, master_down_seconds, parse_config, parse_ip_addr, parse_json_dump,
    parse_vrrp_packet, render_config, without_addresses,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


WEB = VrrpInstance(name="web-vip", interface="eth0", router_id=51, priority=150, advert_interval=0.25,
                   unicast_src_ip="192.0.2.11", unicast_peers=("192.0.2.12",),
                   addresses=(("web-vip", "192.0.2.100/24"),))


def test_json_dump_of_a_master_gives_its_state_and_configuration():
    running = parse_json_dump(fixture("json-master.json"))
    inst = running["web-vip"]
    assert (inst.state_name, inst.router_id, inst.base_priority, inst.advert_interval) == ("MASTER", 51, 150, 0.25)
    assert inst.addresses == ("192.0.2.100/24",)
    assert not inst.nopreempt and inst.preempt_delay == 0 and not inst.tracked
    assert inst.runs(WEB)


def test_json_dump_of_a_backup():
    inst = parse_json_dump(fixture("json-backup.json"))["web-vip"]
    assert inst.state_name == "BACKUP" and inst.base_priority == 100


def test_json_dump_shows_the_haproxy_track_and_the_lowered_priority():
    inst = parse_json_dump(fixture("json-tracked-backup.json"))["web-vip"]
    assert inst.tracked and inst.base_priority == 150 and inst.effective_priority == 99
    assert not inst.runs(WEB), "the running instance tracks HAProxy, the configured one does not"
    assert inst.runs(VrrpInstance(**{**WEB.__dict__, "track_weight": 51}))


def test_running_instance_differs_from_a_changed_configuration():
    inst = parse_json_dump(fixture("json-master.json"))["web-vip"]
    for change in ({"priority": 200}, {"advert_interval": 0.1}, {"router_id": 52}, {"preempt": False},
                   {"preempt_delay": 5}, {"addresses": (("web-vip", "192.0.2.101/24"),)}):
        assert not inst.runs(VrrpInstance(**{**WEB.__dict__, **change})), change


def test_a_half_written_dump_is_refused():
    text = fixture("json-master.json")
    try:
        parse_json_dump(text[: len(text) // 2])
    except ValueError:
        pass
    else:
        raise AssertionError("a truncated dump must not parse")


def test_ip_addr_finds_the_vip_on_the_master_only():
    master, backup = parse_ip_addr(fixture("ip-addr-master.json")), parse_ip_addr(fixture("ip-addr-backup.json"))
    assert master["192.0.2.100/24"] == {"eth0"} and master["192.0.2.11/24"] == {"eth0"}
    assert "192.0.2.100/24" not in backup and backup["192.0.2.12/24"] == {"eth0"}
    assert "::1/128" not in master, "IPv6 is not looked at"
    assert holders(master, "192.0.2.100/32") == {"eth0"}, "the same IP with another prefix is the same IP"


def test_render_starts_every_instance_as_backup_with_vrrp3_and_unicast():
    text = render_config("lb1", [WEB])
    assert text.startswith(f"# {GENERATED_HEADER}\n")
    for line in ("vrrp_version 3", "router_id lb1", "vrrp_instance web-vip {", "state BACKUP", "interface eth0",
                 "virtual_router_id 51", "priority 150", "advert_int 0.25", "unicast_src_ip 192.0.2.11",
                 "192.0.2.12", "192.0.2.100/24 dev eth0"):
        assert f"\n    {line}" in text or f"\n        {line}" in text or f"\n{line}" in text, line
    assert "nopreempt" not in text and "preempt_delay" not in text and "track_script" not in text
    assert "state MASTER" not in text


def test_render_writes_fractions_without_float_noise():
    text = render_config("lb1", [VrrpInstance(**{**WEB.__dict__, "advert_interval": 0.1 + 0.2})])
    assert "advert_int 0.3\n" in text
    assert "advert_int 1\n" in render_config("lb1", [VrrpInstance(**{**WEB.__dict__, "advert_interval": 1.0})])


def test_render_nopreempt_preempt_delay_and_the_haproxy_track():
    text = render_config("lb2", [
        VrrpInstance(**{**WEB.__dict__, "preempt": False}),
        VrrpInstance(**{**WEB.__dict__, "name": "api-vip", "router_id": 52, "preempt_delay": 30, "track_weight": 51,
                        "addresses": (("api-vip", "192.0.2.101/24"),)}),
    ])
    assert "    nopreempt\n" in text and "    preempt_delay 30\n" in text
    assert f'script "{TRACK_SCRIPT}"' in text and "track_haproxy weight -51" in text
    assert "enable_script_security" in text and "script_user root" in text


def test_parse_reads_back_what_render_wrote():
    instances = [
        WEB,
        VrrpInstance(name="api", interface="eth0", router_id=52, priority=90, advert_interval=0.1, preempt=True,
                     preempt_delay=30, track_weight=61, unicast_src_ip="192.0.2.12",
                     unicast_peers=("192.0.2.11", "192.0.2.13"),
                     addresses=(("api-a", "192.0.2.101/24"), ("api-b", "192.0.2.102/24"))),
        VrrpInstance(name="db", interface="eth0", router_id=53, priority=254, advert_interval=2.5, preempt=False,
                     unicast_src_ip="192.0.2.12", unicast_peers=("192.0.2.11",),
                     addresses=(("db-vip", "192.0.2.103/24"),)),
    ]
    parsed = parse_config(render_config("lb2", instances))
    assert parsed.generated
    assert sorted(parsed.instances, key=lambda i: i.name) == sorted(instances, key=lambda i: i.name)


def test_parse_sees_a_hand_edit_as_a_different_value():
    text = render_config("lb1", [WEB]).replace("priority 150", "priority 200  # temporary")
    assert parse_config(text).instances[0].priority == 200


def test_parse_marks_a_foreign_file_as_not_generated():
    text = (FIXTURES / "keepalived-foreign.conf").read_text()
    parsed = parse_config(text)
    assert not parsed.generated
    assert parsed.instances[0].name == "VI_1" and parsed.instances[0].addresses == (), \
        "addresses without a VirtualIP marker belong to no manifest"


def test_an_address_moving_between_instances_is_left_out_of_the_first_config():
    group = VrrpInstance(**{**WEB.__dict__, "name": "web", "addresses": (("web-vip", "192.0.2.100/24"),
                                                                         ("api-vip", "192.0.2.101/24"))})
    other = VrrpInstance(**{**WEB.__dict__, "name": "db", "router_id": 60, "addresses": (("db", "192.0.2.110/24"),)})
    first = without_addresses([group, other], {"192.0.2.100/24", "192.0.2.101/24"})
    assert [i.name for i in first] == ["db"], "an instance left empty is dropped"
    first = without_addresses([group, other], {"192.0.2.100/24"})
    assert first[0].addresses == (("api-vip", "192.0.2.101/24"),)


def test_keepalived_refusal_fixture_names_the_interface():
    # What Keepalived.check passes on to people when `keepalived -t` refuses a file.
    err = fixture("keepalived-t-missing-interface.stderr")
    assert "Non-existent interface" in err and "eth9" in err


def test_vrrp_adverts_captured_on_a_peer_give_source_router_id_and_priority():
    # Two adverts lb2 (master, priority 100) sent to lb1, as a raw IPv4 socket on lb1 got them.
    packets = [bytes.fromhex(line) for line in fixture("vrrp-adverts-from-lb2.hex").split()]
    assert [parse_vrrp_packet(p) for p in packets] == [("192.0.2.12", 52, 100), ("192.0.2.12", 51, 100)]
    assert parse_vrrp_packet(packets[0][:22]) is None, "truncated"
    assert parse_vrrp_packet(b"\x45" + packets[0][1:9] + b"\x06" + packets[0][10:]) is None, "not VRRP (TCP)"


def test_master_down_interval_follows_rfc_5798():
    assert round(master_down_seconds(WEB, 100), 3) == round(3 * 0.25 + 156 / 256 * 0.25, 3)
