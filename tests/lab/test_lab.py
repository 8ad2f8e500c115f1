"""The lab itself: isolation, the domain controller, teardown, stale labs. Real namespaces,
real daemons, nothing mocked. Traffic goes only to loopback and lab namespaces: probes of
outside addresses are connect() calls that fail locally for want of a route."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.lab import (
    ADMIN_PASSWORD, DC_ADDRESS, DOMAIN, JOIN_PASSWORD_FILE, REALM, USERS, Lab, LabError,
    NodeCommandError, sweep_orphans,
)
from controller.lab.lab import venv_bin

pytestmark = pytest.mark.lab

PY = "/usr/bin/python3"
RECONCILE = str(venv_bin() / "reconcile")

SERVER = """\
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    c, _ = s.accept()
    c.sendall(socket.gethostname().encode())
    c.close()
"""
CLIENT = """\
import socket, sys
print(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).recv(100).decode())
"""
# connect() to each address; prints {address: [outcome, seconds]}.
PROBE = """\
import errno, json, socket, sys, time
out = {}
for addr in sys.argv[1:]:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    t = time.monotonic()
    try:
        s.connect((addr, 9))
        what = "connected"
    except socket.timeout:
        what = "timeout"
    except OSError as e:
        what = errno.errorcode.get(e.errno, str(e.errno))
    out[addr] = [what, round(time.monotonic() - t, 3)]
    s.close()
print(json.dumps(out))
"""


def host_ip_json(*args: str) -> list[dict]:
    """Read-only look at the host's own network namespace."""
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout)


def unique_name(tag: str) -> str:
    return f"t{os.getpid()}{tag}"


def lab_processes(lab: Lab) -> list[int]:
    return lab._holder_processes()


def all_processes() -> list[tuple[int, str]]:
    """(pid, start time) of every process: a PID reused later does not match."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            if rest[0] != "Z":
                out.append((int(entry.name), rest[19]))
    return out


def pid_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- network ------------------------------------------------------------------------------

def test_nodes_reach_each_other_over_ping_and_tcp(lab2: Lab) -> None:
    for src, dst in (("lb1", "lb2"), ("lb2", "lb1")):
        lab2.exec(src, ["ping", "-c1", "-W2", lab2.address(dst)])
    server = lab2.popen("lb2", [PY, "-c", SERVER, lab2.address("lb2"), "8080"])
    try:
        lab2.wait_tcp("lb1", lab2.address("lb2"), 8080, timeout=10)
        assert lab2.exec("lb1", [PY, "-c", CLIENT, "lb2", "8080"]).stdout.strip() == "lb2"
    finally:
        server.terminate()
        server.wait(5)


def test_nodes_reach_each_other_over_ipv6_in_the_documentation_prefix(lab2: Lab) -> None:
    assert lab2.address6("lb2") == "2001:db8::12"
    addresses = json.loads(lab2.exec("lb2", ["ip", "-j", "-6", "addr", "show", "dev", "eth0"]).stdout)
    assert "2001:db8::12" in {a["local"] for i in addresses for a in i["addr_info"]}
    lab2.exec("lb1", ["ping", "-6", "-c1", "-W2", lab2.address6("lb2")])
    v6_server = SERVER.replace("int(sys.argv[2]))", "int(sys.argv[2])), family=socket.AF_INET6")
    server = lab2.popen("lb2", [PY, "-c", v6_server, lab2.address6("lb2"), "8080"])
    try:
        lab2.wait_tcp("lb1", lab2.address6("lb2"), 8080, timeout=10)
    finally:
        server.terminate()
        server.wait(5)
    host = json.loads(subprocess.run(["ip", "-j", "-6", "addr"], check=True, capture_output=True, text=True).stdout)
    assert not [a for i in host for a in i.get("addr_info", []) if a["local"].startswith("2001:db8:")]


def test_nodes_have_no_default_route_and_do_not_reach_the_host_or_beyond(lab2: Lab) -> None:
    for family in ("-4", "-6"):
        routes = json.loads(lab2.exec("lb1", ["ip", "-j", family, "route"]).stdout)
        assert [r for r in routes if r["dst"] == "default"] == []
    links = json.loads(lab2.exec("lb1", ["ip", "-j", "link"]).stdout)
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
    node_netns = lab2.exec("lb1", ["readlink", "/proc/self/ns/net"]).stdout.strip()
    assert node_netns != os.readlink("/proc/self/ns/net")

    # The host's own addresses and gateways, seen from a node. Outside the lab subnet there
    # is no route: connect() fails at once, nothing is sent. Inside it (this project's
    # machines number their uplink from 192.0.2.0/24 too) no lab node answers for them.
    lab_net = ipaddress.ip_network("192.0.2.0/24")
    lab_nodes = {lab2.address(n) for n in lab2.nodes}
    targets = {a["local"] for link in host_ip_json("addr") if link["ifname"] != "lo"
               for a in link.get("addr_info", []) if a.get("scope") == "global"}
    targets |= {r["gateway"] for fam in ("-4", "-6") for r in host_ip_json(fam, "route", "show", "default")
                if "gateway" in r}
    targets = sorted(targets - lab_nodes) + ["203.0.113.1"]
    outcome = json.loads(lab2.exec("lb1", [PY, "-c", PROBE, *targets], timeout=60).stdout)
    for addr, (what, seconds) in outcome.items():
        if ipaddress.ip_address(addr) in lab_net:
            assert what in ("EHOSTUNREACH", "timeout"), (addr, what)
        else:
            assert what == "ENETUNREACH" and seconds < 0.5, (addr, what, seconds)


def test_node_loopback_is_its_own(lab2: Lab) -> None:
    with socket.create_server(("127.0.0.1", 0)) as host_server:
        port = host_server.getsockname()[1]
        outcome = json.loads(lab2.exec("lb1", [PY, "-c", PROBE.replace("(addr, 9)", f"(addr, {port})"),
                                               "127.0.0.1"]).stdout)
    assert outcome["127.0.0.1"][0] == "ECONNREFUSED"


def test_host_network_namespace_gains_no_interface_or_address(make_lab) -> None:
    def host_net() -> set[tuple[str, str]]:
        return {(link["ifname"], a.get("local", "")) for link in host_ip_json("addr")
                for a in link.get("addr_info", []) or [{}]}

    before = host_net()
    make_lab(nodes=2)
    assert host_net() == before


# -- files and identity -------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/etc/haproxy/lab-probe.cfg", "/etc/keepalived/lab-probe.conf", "/var/lib/reconcile/lab-probe",
    "/var/lib/pacemaker/lab-probe", "/run/lab-probe", "/tmp/lab-probe", "/dev/shm/lab-probe",
    "/root/lab-probe", "/home/lab-probe",
])
def test_a_write_in_a_node_is_invisible_on_the_host_and_in_other_nodes(lab2: Lab, path: str) -> None:
    text = f"written in lb1 of {lab2.name}\n"
    lab2.write_file("lb1", path, text)
    assert lab2.read_file("lb1", path) == text
    assert not os.path.exists(path)
    assert lab2.exec("lb2", ["test", "-e", path], check=False).returncode == 1


def test_the_host_file_system_is_read_only_in_a_node_but_the_shared_folder(lab2: Lab) -> None:
    checkout = Path(__file__).resolve().parents[2]
    for path in ("/usr/local/lab-probe", "/opt/lab-probe", str(checkout / "lab-probe")):
        r = lab2.exec("lb1", ["touch", path], check=False)
        assert r.returncode == 1 and "Read-only file system" in r.stderr
        assert not os.path.exists(path)
    assert "apiVersion" in lab2.read_file("lb1", str(checkout / "desired-state" / "cluster.yaml"))
    lab2.exec("lb1", ["touch", str(lab2.shared / "lab-probe")])


def test_a_node_is_its_own_machine(lab2: Lab) -> None:
    assert lab2.exec("lb1", ["hostname"]).stdout.strip() == "lb1"
    assert lab2.read_file("lb2", "/etc/hostname") == "lb2\n"
    hosts = lab2.read_file("lb1", "/etc/hosts")
    assert f"{lab2.address('lb2')}\tlb2" in hosts
    assert Path("/etc/hostname").read_text() != "lb1\n"
    # own PID namespace with the holder as init, own sysfs, cgroupfs kept for LXC
    assert "holder.py" in lab2.read_file("lb1", "/proc/1/cmdline")
    assert sorted(lab2.exec("lb1", ["ls", "/sys/class/net"]).stdout.split()) == ["eth0", "lo"]
    assert lab2.exec("lb1", ["ls", "/sys/fs/cgroup"]).stdout.split()
    ids = {lab2.read_file(n, "/etc/machine-id") for n in lab2.nodes} | {Path("/etc/machine-id").read_text()}
    assert len(ids) == 3
    assert lab2.exec("lb1", ["sh", "-c", "command -v reconcile"]).stdout.strip() == RECONCILE
    assert lab2.exec("lb1", ["test", "-d", "/run/haproxy"], check=False).returncode == 0
    assert lab2.exec("lb1", ["test", "-S", "/run/dbus/system_bus_socket"], check=False).returncode == 0
    assert lab2.exec("lb1", ["realm", "list"]).stdout == ""  # realmd answers on the bus: not joined


def test_the_shared_folder_is_the_same_on_the_host_and_in_every_node(lab2: Lab) -> None:
    (lab2.shared / "from-host").write_text("host\n")
    assert lab2.read_file("lb2", str(lab2.shared / "from-host")) == "host\n"
    lab2.write_file("lb1", str(lab2.shared / "from-lb1"), "lb1\n")
    assert (lab2.shared / "from-lb1").read_text() == "lb1\n"


# -- running commands ---------------------------------------------------------------------

def test_exec_passes_exit_code_input_and_errors_through(lab2: Lab) -> None:
    assert lab2.exec("lb1", ["sh", "-c", "exit 7"], check=False).returncode == 7
    assert lab2.exec("lb1", ["cat"], input="to stdin").stdout == "to stdin"
    with pytest.raises(NodeCommandError) as failed:
        lab2.exec("lb1", ["sh", "-c", "echo broken >&2; exit 3"])
    assert failed.value.returncode == 3 and "lb1" in str(failed.value) and "broken" in str(failed.value)
    with pytest.raises(LabError, match="still running"):
        lab2.exec("lb1", ["sleep", "60"], timeout=0.5)
    assert lab2.exec("lb1", ["pgrep", "-x", "sleep"], check=False).returncode == 1
    cli = subprocess.run([RECONCILE, "lab", "exec", "--name", lab2.name, "lb2", "--", "sh", "-c", "hostname; exit 5"],
                         capture_output=True, text=True, timeout=30)
    assert (cli.returncode, cli.stdout) == (5, "lb2\n")


def test_popen_terminate_ends_the_command_in_the_node(lab2: Lab) -> None:
    proc = lab2.popen("lb1", ["sleep", "300"])
    deadline = time.monotonic() + 10
    while lab2.exec("lb1", ["pgrep", "-x", "sleep"], check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.terminate()
    proc.wait(5)
    assert lab2.exec("lb1", ["pgrep", "-x", "sleep"], check=False).returncode == 1


def test_lxc_container_runs_in_a_node_and_down_removes_its_cgroups(lab2: Lab) -> None:
    lab2.write_file("lb1", "/root/c1.conf", "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")
    lab2.exec("lb1", ["lxc-create", "-n", "c1", "-t", "busybox", "-f", "/root/c1.conf"], timeout=120)
    lab2.exec("lb1", ["lxc-start", "-n", "c1"])
    lab2.exec("lb1", ["lxc-wait", "-n", "c1", "-s", "RUNNING", "-t", "10"])
    assert lab2.exec("lb1", ["lxc-attach", "-n", "c1", "--", "hostname"]).stdout.strip() == "c1"
    assert not os.path.exists("/var/lib/lxc/c1")  # the node's /var is its own
    assert lab2._cgroups()  # under reconcile-lab/<lab>/lb1/c1, per the node's lxc.conf
    lab2.down()
    assert lab2._cgroups() == []


# -- the domain controller ----------------------------------------------------------------

def test_dc_answers_ldap_srv_and_kerberos_for_a_node(lab2_dc: Lab) -> None:
    srv = lab2_dc.exec("lb1", ["dig", "+short", "-t", "SRV", f"_ldap._tcp.{DOMAIN}"]).stdout
    assert f"389 dc1.{DOMAIN}." in srv
    # (the DC also registers its IPv6 address, 2001:db8::2: ask for the A record)
    assert lab2_dc.exec("lb1", ["host", "-t", "A", f"dc1.{DOMAIN}"]).stdout.strip().endswith(DC_ADDRESS)
    lab2_dc.exec("lb1", ["kinit", f"alice@{REALM}"], input=USERS["alice"] + "\n")
    klist = lab2_dc.exec("lb1", ["klist"]).stdout
    assert f"Default principal: alice@{REALM}" in klist and f"krbtgt/{REALM}@{REALM}" in klist
    wrong = lab2_dc.exec("lb2", ["kinit", f"carol@{REALM}"], input="not-her-password\n", check=False)
    assert wrong.returncode != 0
    assert lab2_dc.exec("lb2", ["adcli", "info", DOMAIN]).returncode == 0
    assert lab2_dc.status()["domain_controller"] == {"dns": True, "kerberos": True, "ldap": True}


def test_dc_has_the_test_users_and_groups(lab2_dc: Lab) -> None:
    def members(group: str) -> list[str]:
        return lab2_dc.exec("dc1", ["samba-tool", "group", "listmembers", group]).stdout.split()

    assert members("web users") == ["bob"]
    assert members("app-admins") == ["alice"]
    assert "alice" in members("Domain Admins")
    users = lab2_dc.exec("dc1", ["samba-tool", "user", "list"]).stdout.split()
    assert {"alice", "bob", "carol", "Administrator"} <= set(users)


def test_nodes_of_a_dc_lab_resolve_through_it_and_hold_the_join_password(lab2_dc: Lab) -> None:
    resolv = lab2_dc.read_file("lb2", "/etc/resolv.conf")
    assert f"nameserver {DC_ADDRESS}" in resolv and f"search {DOMAIN}" in resolv
    assert f"default_realm = {REALM}" in lab2_dc.read_file("lb1", "/etc/krb5.conf")
    assert lab2_dc.read_file("lb1", JOIN_PASSWORD_FILE) == ADMIN_PASSWORD
    mode = lab2_dc.exec("lb1", ["stat", "-c", "%a", JOIN_PASSWORD_FILE]).stdout.strip()
    assert mode == "600"
    assert not os.path.exists(JOIN_PASSWORD_FILE)


# -- teardown and stale labs --------------------------------------------------------------

def test_down_leaves_no_namespace_bridge_mount_folder_or_process(make_lab) -> None:
    lab = make_lab(nodes=2, domain_controller=True)
    sleeper = lab.popen("lb1", ["sleep", "300"])
    wrappers_and_holders = lab_processes(lab)
    holders = [lab.pid(n) for n in lab.nodes]
    assert len(wrappers_and_holders) == 2 * len(lab.nodes) and set(holders) <= set(wrappers_and_holders)
    # every process inside the nodes (samba's ~60 included), as (pid, start time)
    node_pid_ns = {os.stat(f"/proc/{pid}/ns/pid").st_ino for pid in holders}
    inside = {(pid, start) for pid, start in all_processes() if pid_ns(pid) in node_pid_ns}
    assert len(inside) > 20
    netns = lab._netns_names()
    assert set(netns) == {lab.switch} | {lab.netns(n) for n in lab.nodes}

    lab.down()

    sleeper.wait(5)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not set(netns) & {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert not any(os.path.exists(f"/run/netns/{name}") for name in netns)
    alive = set(all_processes())
    assert not inside & alive
    assert not any(pid in wrappers_and_holders for pid, _ in alive)
    root = str(lab.root).encode()
    assert [pid for pid, _ in alive if root in cmdline(pid)] == []
    assert str(lab.root) not in Path("/proc/self/mountinfo").read_text()
    assert not lab.root.exists()
    assert lab._cgroups() == []


def _up_then_get_killed(name: str, nodes: int, ephemeral: bool) -> subprocess.CompletedProcess:
    """Bring a lab up in a child process that is then SIGKILLed, as a killed test run."""
    code = ("import os, signal, sys\nfrom controller.lab import Lab\n"
            "Lab(sys.argv[1]).up(nodes=int(sys.argv[2]), ephemeral=sys.argv[3] == '1')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    return subprocess.run([sys.executable, "-c", code, name, str(nodes), "1" if ephemeral else "0"],
                          capture_output=True, text=True, timeout=120)


def test_up_cleans_a_lab_left_by_a_killed_run() -> None:
    lab = Lab(unique_name("stale"))
    try:
        killed = _up_then_get_killed(lab.name, 2, ephemeral=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        stale = Lab(lab.name)
        old = [stale.pid(n) for n in stale.nodes]
        assert all(stale._node(n).alive for n in stale.nodes)
        lab.up(nodes=2)
        assert all(not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
                   for pid in old)
        assert len(lab_processes(lab)) == 4
        lab.exec("lb1", ["ping", "-c1", "-W2", lab.address("lb2")])
    finally:
        lab.down()


def test_up_twice_replaces_the_first_lab(lab2: Lab) -> None:
    first = [lab2.pid(n) for n in lab2.nodes]
    lab2.up(nodes=3, ephemeral=True)
    assert lab2.nodes == ["lb1", "lb2", "lb3"]
    assert not set(first) & set(lab_processes(lab2))
    assert len(lab_processes(lab2)) == 6
    lab2.exec("lb3", ["ping", "-c1", "-W2", lab2.address("lb1")])


def test_sweep_removes_test_labs_whose_owner_died_and_keeps_live_ones(lab2: Lab) -> None:
    orphan = Lab(unique_name("orphan"))
    try:
        assert _up_then_get_killed(orphan.name, 1, ephemeral=True).returncode == -signal.SIGKILL
        assert orphan.exists()
        removed = sweep_orphans()
        assert orphan.name in removed and lab2.name not in removed
        assert not orphan.exists() and lab_processes(orphan) == []
        assert lab2.exists()
    finally:
        orphan.down()


def test_cli_up_status_exec_down() -> None:
    name = unique_name("cli")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([RECONCILE, "lab", *args, "--name", name], capture_output=True, text=True, timeout=120)

    try:
        up = cli("up", "--nodes", "1")
        assert up.returncode == 0, up.stderr
        assert "lb1" in up.stdout and "192.0.2.11" in up.stdout
        status = json.loads(cli("status", "-o", "json").stdout)
        assert [(n["name"], n["alive"]) for n in status["nodes"]] == [("lb1", True)]
        assert cli("down").returncode == 0
        assert cli("status").returncode == 1
    finally:
        Lab(name).down()


def test_cli_down_keeps_the_shared_folder_unless_purged() -> None:
    name = unique_name("keep")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([RECONCILE, "lab", *args, "--name", name], capture_output=True, text=True, timeout=120)

    lab = Lab(name)
    try:
        assert cli("up", "--nodes", "1").returncode == 0
        (lab.shared / "repo").mkdir()
        (lab.shared / "repo" / "vip.yaml").write_text("kept\n")
        down = cli("down")
        assert down.returncode == 0 and f"its shared folder {lab.shared} is kept" in down.stdout
        assert (lab.shared / "repo" / "vip.yaml").read_text() == "kept\n"
        assert sorted(p.name for p in lab.root.iterdir()) == ["shared"]  # nothing else of the lab is left
        assert cli("up", "--nodes", "1").returncode == 0  # a rebuilt lab finds it again
        assert lab.read_file("lb1", str(lab.shared / "repo" / "vip.yaml")) == "kept\n"
        assert cli("down", "--purge").returncode == 0
        assert not lab.root.exists()
    finally:
        Lab(name).down()
