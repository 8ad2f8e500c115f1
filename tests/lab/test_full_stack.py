"""The embedded desired-state/ as one working stack on real daemons, and the dry-run guard.

One lab (lb1, lb2 and a Samba AD DC; lb2 serves SFTP for the Mount examples) for the whole
module: the README's demo, as tests.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from controller.cli import DEFAULT_REPO
from controller.lab import temporary_lab
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2")
# Everything a node keeps (and /tmp, listed: validators' temp files must be gone again).
WATCHED = ["/etc", "/var", "/run", "/home", "/root"]


@pytest.fixture(scope="module")
def lab():
    with temporary_lab(nodes=2, domain_controller=True, sftp=True) as lab:
        repo = lab.shared / "repo"
        shutil.copytree(DEFAULT_REPO, repo)
        yield lab


def snapshot(lab, node: str) -> dict:
    """What a dry-run must not change: files, addresses, processes."""
    # Not state: the running daemons write their own logs on their own timers (pacemaker.log).
    # LXC's lock folders: what is there, whole (a folder made and removed again changes its
    # parent's time only); the native check's scratch LXC path must leave none (issue 22).
    files = lab.exec(node, ["find", *WATCHED, "-xdev", "-newer", "/tmp/.dry-run-marker", "-not", "-path", "/run/lxc",
                            "-not", "-path", "/run/lxc/*", "-not", "-path", "/var/log/*"], check=False).stdout.split()
    files += lab.exec(node, ["find", "/run/lxc", "-xdev"], check=False).stdout.split()
    # /tmp: validators' temp files must be gone again (what is there is compared, not times)
    files += lab.exec(node, ["find", "/tmp", "-xdev"], check=False).stdout.split()
    addrs = json.loads(lab.exec(node, ["ip", "-j", "addr"]).stdout)
    procs = lab.exec(node, ["ps", "-eo", "pid=,comm="]).stdout.split("\n")
    # Not state either: the snapshot's own ps/find/ip, and the pgrep keepalived's trackHaproxy
    # script runs every advert interval (it showed in one snapshot of a full-suite run).
    return {"changed files": sorted(files),
            "addresses": sorted((a["ifname"], i["local"]) for a in addrs for i in a.get("addr_info", [])),
            "processes": sorted(p.strip() for p in procs
                                if p.strip() and not p.strip().endswith(("ps", "find", "ip", "pgrep")))}


def recorded_dry_run(lab, node: str, repo: Path) -> tuple[int, str, list[dict]]:
    lab.exec(node, ["touch", "/tmp/.dry-run-marker"])
    record = lab.shared / f"record-{node}.json"
    before = snapshot(lab, node)
    result = lab.exec(node, ["env", f"RECONCILE_RECORD={record}", "reconcile", "--dry-run", "--repo", str(repo)],
                      check=False, timeout=300)
    after = snapshot(lab, node)
    assert after == before, "a dry-run changed the node"
    return result.returncode, result.stdout + result.stderr, json.loads(record.read_text())


def assert_read_only(records: list[dict]) -> None:
    assert records, "the recorder saw no command at all"
    refused = [f"{r['what']}: {' '.join(r['argv'])}" for r in records if not allowed(r["what"], r["argv"])]
    assert not refused, "dry-run ran commands outside the read-only allow-list:\n" + "\n".join(refused)


def apply_until_converged(lab, repo: Path, rounds: int = 4) -> dict[str, int]:
    """Apply on every node in turn until a round changes nothing (a cluster forms only when
    both nodes run it, and only Pacemaker's DC writes the CIB)."""
    codes: dict[str, int] = {}
    for _ in range(rounds):
        for node in NODES:
            codes[node] = lab.exec(node, ["reconcile", "apply", "--repo", str(repo)], check=False, timeout=600).returncode
        if all(rc == 0 for rc in codes.values()):
            break
    return codes


def test_dry_run_on_an_empty_node_changes_nothing_and_only_reads(lab):
    rc, out, records = recorded_dry_run(lab, "lb1", lab.shared / "repo")
    assert rc == 2, out
    assert "+ VirtualIP web-vip" in out and "+ Mount reports" in out
    assert_read_only(records)


def test_apply_converges_every_node(lab):
    codes = apply_until_converged(lab, lab.shared / "repo")
    outs = {n: lab.exec(n, ["reconcile", "--dry-run", "--repo", str(lab.shared / "repo")], check=False).stdout
            for n in NODES}
    assert codes == {"lb1": 0, "lb2": 0}, outs


def test_the_stack_serves_http_through_the_vip(lab):
    fetch = ("import urllib.request,sys;"
             "print(urllib.request.urlopen('http://192.0.2.100' + sys.argv[1], timeout=5).status)")
    for path in ("/", "/api"):
        assert lab.exec("lb2", ["/usr/bin/python3", "-c", fetch, path]).stdout.strip() == "200"


def test_the_reports_folder_of_lb2_is_mounted_on_lb1_through_rclone_and_sshfs(lab):
    for point in ("/mnt/reports", "/mnt/reports-sshfs"):
        assert "Served over SFTP by lb2" in lab.exec("lb1", ["cat", f"{point}/README.txt"]).stdout


def test_a_second_apply_has_nothing_to_do(lab):
    for node in NODES:
        result = lab.exec(node, ["reconcile", "apply", "--repo", str(lab.shared / "repo")], check=False, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr


# The native validators of every kind (issue 12: `native_check` remembers what a node accepted).
VALIDATORS = ("haproxy -c", "keepalived -t", "corosync -t", "crm_verify", "lxc-ls -1", "visudo -c",
              "sssctl config-check", "rclone", "systemd-analyze")


def test_a_no_op_plan_of_the_applied_tree_runs_no_native_validator(lab):
    for node in NODES:
        rc, out, records = recorded_dry_run(lab, node, lab.shared / "repo")
        assert rc == 0, out
        ran = [" ".join(r["argv"]) for r in records if r["what"] == "exec"]
        assert not [c for c in ran if c.startswith(VALIDATORS) or " metadata" in c], ran


def test_dry_run_of_a_change_on_a_running_node_changes_nothing_and_only_reads(lab):
    changed = lab.shared / "repo-changed"
    shutil.copytree(lab.shared / "repo", changed)
    backends = changed / "backends.yaml"
    backends.write_text(backends.read_text().replace("port: 80, weight: 2}", "port: 80, weight: 7}"))
    vips = changed / "virtual-ips.yaml"
    vips.write_text(vips.read_text().replace("lb2: 100", "lb2: 120"))
    rc, out, records = recorded_dry_run(lab, "lb1", changed)
    assert rc == 2, out
    assert "weight: 2 → 7" in out
    assert_read_only(records)
