"""The drain's connection gate (reconcilers/keepalived/gate.py): its nftables table, checked
by the real nft against the kernel (`nft -c`, nothing committed), and the count of open
connections read from this namespace's /proc/net/tcp and tcp6 while real sockets are open."""
from __future__ import annotations

import ipaddress
import socket
import subprocess
import time

import pytest

from reconcilers.keepalived import gate


def test_the_table_drops_only_first_packets_to_the_moving_addresses_and_is_valid_for_nft():
    text = gate.ruleset(["192.0.2.160", "2001:DB8::1", "192.0.2.9"])
    assert "ip daddr { 192.0.2.160, 192.0.2.9 } tcp flags & (fin | syn | rst | ack) == syn drop" in text
    assert "ip6 daddr { 2001:db8::1 } tcp flags & (fin | syn | rst | ack) == syn drop" in text
    assert text.startswith(f"table inet {gate.TABLE} {{}}\ndelete table inet {gate.TABLE}\n")  # replaces a stale one
    r = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ip6" not in gate.ruleset(["192.0.2.160/24"])


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_open_connections_are_counted_until_they_close(family, host):
    ip = ipaddress.ip_address(host)
    before = gate.open_connections({ip})
    server = socket.socket(family)
    server.bind((host, 0))
    server.listen()
    client = socket.create_connection((host, server.getsockname()[1]))
    accepted, _ = server.accept()
    try:
        # both ends are local here: the client's and the accepted socket
        assert gate.open_connections({ip}) == before + 2
        assert gate.open_connections({ipaddress.ip_address("192.0.2.160")}) == 0
    finally:
        client.close()
        accepted.close()
        server.close()
    for _ in range(50):  # TIME_WAIT and FIN_WAIT2 are not open; loopback settles at once
        if gate.open_connections({ip}) <= before:
            break
        time.sleep(0.01)
    assert gate.open_connections({ip}) <= before


def test_an_ipv4_client_of_a_dual_stack_socket_is_seen_as_ipv4():
    assert gate._local_ip("0000000000000000FFFF00000100007F") == ipaddress.ip_address("127.0.0.1")
    assert gate._local_ip("0100007F") == ipaddress.ip_address("127.0.0.1")


def test_waiting_gives_up_after_the_grace_and_counts_what_is_still_open(tmp_path):
    (tmp_path / "tcp").write_text(
        "  sl  local_address rem_address   st\n"
        "   0: A00200C0:1F90 0B00200C0:D431 01 00000000:00000000 00:00000000 00000000     0 0 1\n")
    held = gate.wait_closed(gate.Gate(("192.0.2.160",), closed=True), 0.1, proc=tmp_path)
    assert held.still_open == 1 and 0.1 <= held.held < 0.5
    (tmp_path / "tcp").write_text("  sl  local_address rem_address   st\n")
    assert gate.wait_closed(gate.Gate(("192.0.2.160",), closed=True), 5, proc=tmp_path).held < 0.1
