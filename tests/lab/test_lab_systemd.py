"""Lab nodes that boot a real systemd (`lab up --systemd`): a fresh Debian machine inside,
the same lab from outside (addresses, bridge, isolation, the Lab API), nothing left after
`down`, also when the test run that made them was killed.

One lab (with the SFTP server, `sftp=True`) for the read-only checks of the module; the
teardown tests make their own.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.lab import Lab, LabError, NodeCommandError, sweep_orphans, temporary_lab
from controller.lab import systemd_node
from controller.lab.lab import venv_bin
from tests.lab.test_lab import CLIENT, SERVER, all_processes, cmdline, host_ip_json, pid_ns, unique_name

pytestmark = pytest.mark.lab
PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=2, systemd=True, sftp=True) as lab:
        yield lab


def test_systemd_is_pid_1_and_the_boot_ends_running(lab: Lab) -> None:
    for node in lab.nodes:
        assert lab.read_file(node, "/proc/1/comm").strip() == "systemd"
        assert lab.exec(node, ["systemctl", "is-system-running"]).stdout.strip() == "running"
        assert lab.exec(node, ["hostname"]).stdout.strip() == node
    assert 0 < lab.record["bootSeconds"]["lb1"] < 30
    ids = {lab.read_file(n, "/etc/machine-id") for n in lab.nodes} | {Path("/etc/machine-id").read_text()}
    assert len(ids) == 3


def test_the_packages_services_run_as_on_a_fresh_debian_machine(lab: Lab) -> None:
    def show(unit: str, *props: str) -> list[str]:
        return lab.exec("lb1", ["systemctl", "show", "--value", *(f"--property={p}" for p in props), unit]).stdout.split("\n")

    # Corosync and Pacemaker run the packages' one-node cluster, HAProxy Debian's file.
    assert show("corosync.service", "ActiveState", "UnitFileState")[:2] == ["active", "enabled"]
    assert show("pacemaker.service", "ActiveState", "UnitFileState")[:2] == ["active", "enabled"]
    assert lab.exec("lb1", ["corosync-cmapctl", "-g", "totem.cluster_name"]).stdout.split()[-1] == "debian"
    assert show("haproxy.service", "ActiveState")[0] == "active"
    # the host's file as its package installed it (on a fresh machine: Debian's default)
    assert lab.read_file("lb1", "/etc/haproxy/haproxy.cfg") == Path("/etc/haproxy/haproxy.cfg").read_text()
    # keepalived and sssd: enabled, skipped by their units' conditions (no configuration yet)
    for unit in ("keepalived.service", "sssd.service"):
        active, enabled, condition = show(unit, "ActiveState", "UnitFileState", "ConditionResult")[:3]
        assert (active, enabled, condition) == ("inactive", "enabled", "no"), unit


def test_units_that_do_not_belong_on_a_node_are_masked_as_computed(lab: Lab) -> None:
    masked = systemd_node.masked_units()
    assert {"lxc-net.service", "smbd.service", "samba-ad-dc.service"} <= set(masked)
    assert not {"corosync.service", "pacemaker.service", "haproxy.service", "keepalived.service",
                "sssd.service", "sssd-nss.socket", "logd.service"} & set(masked)
    listed = lab.exec("lb1", ["systemctl", "list-unit-files", "--state=masked", "--no-legend", "--plain"]).stdout
    assert set(masked) <= {line.split()[0] for line in listed.splitlines() if line.strip()}
    links = json.loads(lab.exec("lb1", ["ip", "-j", "link"]).stdout)
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]  # lxc-net made no lxcbr0


def test_mnt_is_an_empty_tmpfs_and_fuse_and_autofs_devices_are_there(lab: Lab) -> None:
    for node in lab.nodes:
        assert lab.exec(node, ["findmnt", "-n", "-o", "FSTYPE", "/mnt"]).stdout.strip() == "tmpfs"
        assert lab.exec(node, ["ls", "-A", "/mnt"]).stdout == ""  # not the host's /mnt
        assert lab.exec(node, ["stat", "-c", "%F %t:%T", "/dev/fuse", "/dev/autofs"]).stdout.split("\n")[:2] == \
            ["character special file a:e5", "character special file a:eb"]  # 10:229, 10:235
    lab.write_file("lb1", "/mnt/probe/f", "lb1\n")
    assert not os.path.exists("/mnt/probe") and lab.exec("lb2", ["ls", "-A", "/mnt"]).stdout == ""


def test_the_sftp_server_is_a_unit_of_the_nodes_systemd_and_never_runs_on_the_host(lab: Lab) -> None:
    assert lab.sftp_server == "lb2"
    shown = lab.exec("lb2", ["systemctl", "show", "--property=ActiveState,MainPID", "reconcile-lab-sftp.service"]).stdout
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["ActiveState"] == "active"
    assert lab.read_file("lb2", f"/proc/{props['MainPID']}/comm").strip() == "sshd"
    assert lab.exec("lb2", ["systemctl", "is-enabled", "ssh.service"], check=False).stdout.strip() == "masked"
    assert lab.exec("lb1", ["systemctl", "is-active", "reconcile-lab-sftp.service"], check=False).stdout.strip() \
        == "inactive"  # only the server node runs it
    assert Path("/etc/ssh/sshd_not_to_be_run").exists()  # the host's own guard is left as it is
    host = pid_ns(os.getpid())
    sshd = [pid for pid, _ in all_processes()
            if cmdline(pid).startswith((b"sshd", b"/usr/sbin/sshd")) and pid_ns(pid) == host]
    assert sshd == [], "an sshd runs in the host's PID namespace"
    lab.wait_tcp("lb1", lab.address("lb2"), 22, timeout=10)


def test_nodes_reach_each_other_and_nothing_else(lab: Lab) -> None:
    lab.exec("lb1", ["ping", "-c1", "-W2", lab.address("lb2")])
    server = lab.popen("lb2", [PY, "-c", SERVER, lab.address("lb2"), "8080"])
    try:
        lab.wait_tcp("lb1", lab.address("lb2"), 8080, timeout=10)
        assert lab.exec("lb1", [PY, "-c", CLIENT, "lb2", "8080"]).stdout.strip() == "lb2"
    finally:
        server.terminate()
        server.wait(5)
    for family in ("-4", "-6"):
        routes = json.loads(lab.exec("lb1", ["ip", "-j", family, "route"]).stdout)
        assert [r for r in routes if r["dst"] == "default"] == []
    r = lab.exec("lb1", [PY, "-c", "import socket; socket.create_connection(('203.0.113.1', 9), timeout=2)"],
                 check=False)
    assert "Network is unreachable" in r.stderr
    assert lab.exec("lb1", ["readlink", "/proc/self/ns/net"]).stdout.strip() != os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize("path", ["/etc/haproxy/lab-probe.cfg", "/var/lib/lab-probe", "/usr/local/lab-probe",
                                  "/opt/lab-probe", "/root/lab-probe", "/tmp/lab-probe"])
def test_writes_in_a_node_never_reach_the_host_or_the_other_node(lab: Lab, path: str) -> None:
    lab.write_file("lb1", path, "lb1\n")
    assert lab.read_file("lb1", path) == "lb1\n"
    assert not os.path.exists(path)
    assert lab.exec("lb2", ["test", "-e", path], check=False).returncode == 1


def test_the_shared_folder_and_the_checkout_are_seen_at_the_same_path(lab: Lab) -> None:
    (lab.shared / "from-host").write_text("host\n")
    assert lab.read_file("lb2", str(lab.shared / "from-host")) == "host\n"
    lab.write_file("lb1", str(lab.shared / "from-lb1"), "lb1\n")
    assert (lab.shared / "from-lb1").read_text() == "lb1\n"
    assert lab.exec("lb1", ["sh", "-c", "command -v reconcile"]).stdout.strip() == str(venv_bin() / "reconcile")
    checkout = Path(__file__).resolve().parents[2]
    assert lab.exec("lb1", ["pwd"], cwd=str(checkout)).stdout.strip() == str(checkout)


def test_exec_and_popen_behave_as_on_other_nodes(lab: Lab) -> None:
    assert lab.exec("lb1", ["sh", "-c", "exit 7"], check=False).returncode == 7
    assert lab.exec("lb1", ["cat"], input="to stdin").stdout == "to stdin"
    assert lab.exec("lb1", ["sh", "-c", "echo $PROBE"], env={"PROBE": "passed"}).stdout == "passed\n"
    with pytest.raises(NodeCommandError) as failed:
        lab.exec("lb1", ["sh", "-c", "echo broken >&2; exit 3"])
    assert failed.value.returncode == 3 and "broken" in str(failed.value)
    with pytest.raises(LabError, match="still running"):
        lab.exec("lb1", ["sleep", "61"], timeout=0.5)
    assert lab.exec("lb1", ["pgrep", "-f", "sleep 61"], check=False).returncode == 1
    proc = lab.popen("lb2", ["sleep", "62"])
    deadline = time.monotonic() + 10
    while lab.exec("lb2", ["pgrep", "-f", "sleep 62"], check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.terminate()
    proc.wait(5)
    assert lab.exec("lb2", ["pgrep", "-f", "sleep 62"], check=False).returncode == 1
    # commands run in the node's control groups, as what systemd starts there
    assert "/.." not in lab.exec("lb1", ["cat", "/proc/self/cgroup"]).stdout
    cli = subprocess.run([str(venv_bin() / "reconcile"), "lab", "exec", "--name", lab.name, "lb2", "--",
                          "sh", "-c", "hostname; exit 5"], capture_output=True, text=True, timeout=30)
    assert (cli.returncode, cli.stdout) == (5, "lb2\n")


# -- teardown ---------------------------------------------------------------------------------

def node_leftovers(lab: Lab, inside: set[tuple[int, str]]) -> dict[str, object]:
    """Everything of the lab's systemd nodes that may outlive them on the host."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {
        "processes": sorted(inside & set(all_processes())),
        "cgroups": systemd_node.leftover_cgroups(lab.name),
        "netns": [n for n in listed.split() if n.startswith(f"{lab.name}-")],
        "mounts": [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(lab.root) in line],
        "folder": lab.root.exists(),
    }


NOTHING = {"processes": [], "cgroups": [], "netns": [], "mounts": [], "folder": False}


def processes_inside(lab: Lab) -> set[tuple[int, str]]:
    namespaces = {pid_ns(lab.pid(n)) for n in lab.nodes}
    return {(pid, start) for pid, start in all_processes() if pid_ns(pid) in namespaces}


def test_down_leaves_no_container_cgroup_mount_namespace_or_process(make_lab) -> None:
    lab = make_lab(nodes=2, systemd=True)
    lab.popen("lb1", ["sleep", "300"])
    inside = processes_inside(lab)
    assert len(inside) > 20  # systemd, journald, corosync, pacemaker's six, haproxy...
    assert systemd_node.leftover_cgroups(lab.name)
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(lab.root) in line]
    lab.down()
    assert node_leftovers(lab, inside) == NOTHING


def test_down_ends_nodes_whose_lxc_monitors_were_killed(make_lab) -> None:
    lab = make_lab(nodes=1, systemd=True)
    inside = processes_inside(lab)
    monitors = [pid for pid in systemd_node.lab_processes(lab.name, systemd_node.lxc_path(lab))
                if cmdline(pid).startswith(b"[lxc monitor]")]
    assert monitors
    for pid in monitors:
        os.kill(pid, signal.SIGKILL)
    lab.down()
    assert node_leftovers(lab, inside) == NOTHING


def test_sweep_removes_systemd_nodes_of_a_killed_run() -> None:
    orphan = Lab(unique_name("sysorphan"))
    code = ("import os, signal, sys\nfrom controller.lab import Lab\n"
            "Lab(sys.argv[1]).up(nodes=1, systemd=True, ephemeral=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    try:
        killed = subprocess.run([sys.executable, "-c", code, orphan.name], capture_output=True, text=True, timeout=120)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        inside = processes_inside(orphan)
        assert inside, "the node should still run after its owner was killed"
        assert orphan.name in sweep_orphans()
        assert node_leftovers(orphan, inside) == NOTHING
    finally:
        orphan.down()


def test_sweep_removes_systemd_nodes_whose_lab_record_is_gone(make_lab) -> None:
    lab = make_lab(nodes=1, systemd=True)
    inside = processes_inside(lab)
    (lab.root / "lab.json").unlink()  # as if its folder had been removed by hand
    assert lab.name in sweep_orphans()
    assert node_leftovers(lab, inside) == NOTHING


def test_cli_up_systemd_status_down() -> None:
    name = unique_name("sycli")
    reconcile = str(venv_bin() / "reconcile")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([reconcile, "lab", *args, "--name", name], capture_output=True, text=True, timeout=120)

    try:
        up = cli("up", "--nodes", "1", "--systemd")
        assert up.returncode == 0, up.stderr
        assert "systemd (booted in" in up.stdout
        status = json.loads(cli("status", "-o", "json").stdout)
        assert [(n["name"], n["init"], n["alive"]) for n in status["nodes"]] == [("lb1", "systemd", True)]
        assert cli("down").returncode == 0
        assert not systemd_node.leftover_cgroups(name)
    finally:
        Lab(name).down()


def test_the_host_network_namespace_gains_nothing(make_lab) -> None:
    def host_net() -> set[tuple[str, str]]:
        return {(link["ifname"], a.get("local", "")) for link in host_ip_json("addr")
                for a in link.get("addr_info", []) or [{}]}

    before = host_net()
    make_lab(nodes=2, systemd=True)
    assert host_net() == before
