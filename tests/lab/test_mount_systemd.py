"""Mount on nodes that boot a real systemd: the embedded examples (rclone with a password,
sshfs with a key, from the lab's SFTP server in lb2) become mount units on lb1 that come
back at boot, and automount units that mount on first access; a killed FUSE daemon is
repaired by the next apply and by the agent; removal leaves no unit behind.

One lab (lb1, lb2 booting systemd; lb2's SFTP server is a unit of its own systemd) for the
module; each test starts from the state it needs. Everything runs inside lb1 as an
operator would. tests/lab/test_mount.py covers the same kind on init-less nodes (direct
mounts), including secrets, options drift, busy mounts and bad input, which do not depend
on the init system.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from controller.lab import Lab, temporary_lab
from tests.lab.test_mount import (
    EXAMPLE, MOUNTS, agent, apply, daemons, example, kill_then_apply, kill_until_back, mounted, readable, sh, tree,
)

pytestmark = pytest.mark.lab
UNITS = {"/mnt/reports": "mnt-reports.mount", "/mnt/reports-sshfs": "mnt-reports\\x2dsshfs.mount"}
AUTOMOUNT = "mnt-reports\\x2dsshfs.automount"
WITHOUT_REPORTS = EXAMPLE.split("\n---\n", 1)[1]  # the example but the rclone mount


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=2, systemd=True, sftp=True, prefix="ms") as lab:
        yield lab


def unit(lab: Lab, name: str) -> dict[str, str]:
    out = lab.exec("lb1", ["systemctl", "show", "--property=ActiveState,SubState,UnitFileState,WantedBy,LoadState",
                           name]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def running(lab: Lab) -> str:
    return lab.exec("lb1", ["systemctl", "is-system-running"], check=False).stdout.strip()


def unit_of(lab: Lab, pid: int) -> str:
    """The systemd unit whose control group holds the process."""
    return sh(lab, f"ps -o unit= -p {pid}").strip()


def units_on_disk(lab: Lab) -> list[str]:
    """Mount unit files and their links in lb1's /etc/systemd/system (relative paths)."""
    return sorted(sh(lab, "find /etc/systemd/system -name 'mnt-*' -printf '%P\\n'").split())


def enabled(*names: str) -> list[str]:
    """What `units_on_disk` holds for these mount units, enabled (wanted by remote-fs.target)."""
    return sorted([*names, *(f"remote-fs.target.wants/{n}" for n in names)])


def fresh(lab: Lab) -> None:
    """Nothing of ours on lb1 (with nothing left to prune, lb1 is in no placement: exit 1)."""
    apply(lab, tree(lab, "gone"), "--allow-mass-prune", rc=None)
    assert mounted(lab) == {} and units_on_disk(lab) == []


def converge(lab: Lab) -> None:
    apply(lab, example(lab), "--allow-mass-prune")
    assert readable(lab)


def test_the_example_mounts_come_up_as_units_that_come_back_at_boot(lab):
    repo = example(lab)
    plan = lab.reconcile("lb1", "--dry-run", "--repo", repo)
    assert plan.returncode == 2 and "(units mnt-reports.mount)" in plan.stdout, plan.stdout
    assert mounted(lab) == {}
    apply(lab, repo)
    assert mounted(lab) == {"/mnt/reports": "fuse.rclone reports:reports",
                            "/mnt/reports-sshfs": "fuse.sshfs files@192.0.2.12:reports"}
    assert readable(lab)
    for point, name in UNITS.items():
        u = unit(lab, name)
        assert (u["ActiveState"], u["SubState"], u["UnitFileState"]) == ("active", "mounted", "enabled"), u
        assert "remote-fs.target" in u["WantedBy"]  # network mounts: mounted again at boot
        assert unit_of(lab, daemons(lab)[point]) == name  # systemd runs the FUSE daemon, in the unit
    assert "Read-only file system" in sh(lab, "touch /mnt/reports-sshfs/x 2>&1", check=False)
    assert running(lab) == "running"
    assert lab.reconcile("lb1", "--dry-run", "--repo", repo).returncode == 0


def test_a_killed_fuse_daemon_is_remounted_by_the_next_apply_and_its_unit_stays_up(lab):
    converge(lab)
    repo = example(lab)
    old, took = kill_then_apply(lab, repo)
    now = daemons(lab)
    for point, name in UNITS.items():
        assert now[point] != old[point] and unit_of(lab, now[point]) == name
        assert unit(lab, name)["ActiveState"] == "active"
    assert running(lab) == "running"
    assert lab.reconcile("lb1", "--dry-run", "--repo", repo).returncode == 0
    print(f"\nsystemd node: remount of 2 dead FUSE mounts by `reconcile apply`: {took:.2f} s")


def test_the_agent_remounts_a_killed_fuse_daemon_of_a_mount_unit_at_once(lab):
    converge(lab)
    with agent(lab) as log:  # it follows the daemons that systemd's mount helpers run
        took = [kill_until_back(lab, point, log) for point in MOUNTS]
        assert "FUSE daemon" in log.read_text()
        print(f"\nsystemd node, agent: FUSE daemon killed → readable again: rclone {took[0]:.2f} s, "
              f"sshfs {took[1]:.2f} s")
    assert running(lab) == "running"


def test_an_automount_is_armed_left_alone_by_a_dry_run_and_mounts_on_first_access(lab):
    fresh(lab)
    repo = example(lab, **{"  options: [noexec, nosuid, nodev]":
                           "  options: [noexec, nosuid, nodev]\n  automount: {idleTimeout: 10m}"})
    apply(lab, repo)
    armed = {"/mnt/reports": "fuse.rclone reports:reports", "/mnt/reports-sshfs": "autofs systemd-1"}
    assert mounted(lab) == armed  # nothing mounted at the path until someone looks
    assert units_on_disk(lab) == sorted([*enabled(UNITS["/mnt/reports"]), UNITS["/mnt/reports-sshfs"],
                                         AUTOMOUNT, f"remote-fs.target.wants/{AUTOMOUNT}"])
    auto = unit(lab, AUTOMOUNT)
    assert (auto["ActiveState"], auto["SubState"], auto["UnitFileState"]) == ("active", "waiting", "enabled"), auto
    assert unit(lab, UNITS["/mnt/reports-sshfs"])["ActiveState"] == "inactive"
    assert lab.reconcile("lb1", "--dry-run", "--repo", repo).returncode == 0
    assert mounted(lab) == armed  # the dry-run did not mount it (it never touches an armed point)
    assert "Served over SFTP" in sh(lab, "cat /mnt/reports-sshfs/README.txt")
    stack = [line.split(" - ")[1].split()[0] for line in sh(lab, "cat /proc/self/mountinfo").splitlines()
             if line.split()[4] == "/mnt/reports-sshfs"]
    assert stack == ["autofs", "fuse.sshfs"]
    # its daemon killed: the FUSE mount goes, the automount stays armed and mounts again
    sh(lab, f"kill -9 {daemons(lab)['/mnt/reports-sshfs']}")
    run = apply(lab, repo)
    assert "drift corrected" in run.stdout, run.stdout
    assert readable(lab) and unit(lab, AUTOMOUNT)["ActiveState"] == "active"
    assert lab.reconcile("lb1", "--dry-run", "--repo", repo).returncode == 0
    # and back to a plain mount unit
    apply(lab, example(lab))
    assert units_on_disk(lab) == enabled(*UNITS.values()) and unit(lab, AUTOMOUNT)["LoadState"] == "not-found"
    assert readable(lab) and running(lab) == "running"


def test_units_of_a_mount_stopped_by_hand_go_with_its_manifest(lab):
    converge(lab)
    lab.exec("lb1", ["systemctl", "stop", UNITS["/mnt/reports"]])
    run = apply(lab, tree(lab, "without", WITHOUT_REPORTS), "--allow-mass-prune")
    assert "- Mount reports (applied: delete)" in run.stdout, run.stdout
    assert units_on_disk(lab) == enabled(UNITS["/mnt/reports-sshfs"])
    assert unit(lab, UNITS["/mnt/reports"])["LoadState"] == "not-found"
    assert sh(lab, "ls -d /mnt/*").split() == ["/mnt/reports-sshfs"]  # the point reconcile made went too


def test_removal_from_git_is_clean(lab):
    converge(lab)
    apply(lab, tree(lab, "gone"), "--allow-mass-prune")
    assert mounted(lab) == {} and daemons(lab) == {}
    assert "ssh " not in sh(lab, "ps -eo args")
    assert units_on_disk(lab) == []  # the units and their remote-fs.target.wants links
    assert sh(lab, "systemctl list-units --all --no-legend --plain 'mnt-reports*'").strip() == ""
    left = sh(lab, "find /etc/reconcile/mount /var/cache/reconcile/mount /var/lib/reconcile/mount /mnt -mindepth 1")
    assert left.strip() == "", left
    assert running(lab) == "running"
    assert lab.reconcile("lb1", "--dry-run", "--repo", tree(lab, "gone")).returncode == 0
