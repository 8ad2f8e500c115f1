"""Mount on real FUSE in lab nodes: rclone (sftp remote, password) and sshfs (key) mounting
the lab's SFTP server (sshd in lb2, `lab up --sftp`) on lb1, from the embedded examples.

One lab for the module; each test starts from the state it needs (`converge`) and leaves
lb1 with the example mounts up, or says otherwise. Everything runs inside lb1 as an
operator would: `reconcile apply --repo <tree in lab.shared>`. Remount times after a FUSE
crash are printed (run with -s to see them); bench/bench_mount.py measures them properly.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from controller.cli import DEFAULT_REPO
from controller.lab import SFTP_KEY_FILE, SFTP_PASSWORD, Lab, temporary_lab
from reconcilers.mount.fuse import DAEMONS
from tests.lab.sampling import CmdlineWatcher
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab

EXAMPLE = (DEFAULT_REPO / "mounts.yaml").read_text()
MOUNTS = ("/mnt/reports", "/mnt/reports-sshfs")
GIT_ENV = {"GIT_AUTHOR_NAME": "Operator", "GIT_AUTHOR_EMAIL": "ops@example.test", "GIT_COMMITTER_NAME": "Operator",
           "GIT_COMMITTER_EMAIL": "ops@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=2, sftp=True, prefix="mt") as lab:
        yield lab


def tree(lab: Lab, name: str, *docs: str) -> str:
    root = lab.shared / name
    root.mkdir(exist_ok=True)
    for f in root.glob("*.yaml"):
        f.unlink()
    for i, doc in enumerate(docs):
        (root / f"m{i}.yaml").write_text(doc)
    return str(root)


def example(lab: Lab, **replace: str) -> str:
    text = EXAMPLE
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return tree(lab, "example", text)


def apply(lab: Lab, repo: str, *extra: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
    r = lab.reconcile("lb1", "apply", "--repo", repo, *extra, timeout=180)
    if rc is not None:
        assert r.returncode == rc, r.stdout + r.stderr
    return r


def sh(lab: Lab, script: str, check: bool = True) -> str:
    return lab.exec("lb1", ["sh", "-c", script], check=check).stdout


def mounted(lab: Lab) -> dict[str, str]:
    """{mount point: 'fstype source'} of lb1's mounts below /mnt."""
    out = {}
    for line in sh(lab, "cat /proc/self/mountinfo").splitlines():
        f = line.split()
        if f[4].startswith("/mnt/"):
            tail = line.split(" - ")[1].split()
            out[f[4]] = f"{tail[0]} {tail[1]}"
    return out


def daemons(lab: Lab) -> dict[str, int]:
    """{mount point: PID in lb1} of the rclone and sshfs processes (run directly, or as the
    mount helpers of systemd's mount units)."""
    out = {}
    for line in sh(lab, "ps -eo pid=,args=").splitlines():
        pid, _, args = line.strip().partition(" ")
        argv = args.split()
        if argv and os.path.basename(argv[0]) in DAEMONS:
            for point in MOUNTS:
                if point in argv:
                    out[point] = int(pid)
    return out


def readable(lab: Lab) -> bool:
    r = lab.exec("lb1", ["sh", "-c", "cat /mnt/reports/README.txt /mnt/reports-sshfs/README.txt"], check=False)
    return r.returncode == 0 and r.stdout.count("Served over SFTP") == 2


def converge(lab: Lab) -> None:
    """The example mounts up on lb1, with nothing else of ours around."""
    apply(lab, example(lab), "--allow-mass-prune")
    assert readable(lab)


def test_dry_run_on_an_empty_node_plans_both_mounts_and_only_reads(lab):
    repo = example(lab)
    record = lab.shared / "record.json"
    before = sh(lab, "find /etc /var /run /mnt -xdev -newer /etc/hostname | sort")
    plan = lab.exec("lb1", ["reconcile", "--dry-run", "--repo", repo], env={"RECONCILE_RECORD": str(record)}, check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "+ Mount reports" in plan.stdout and "+ Mount reports-sshfs" in plan.stdout
    assert "= Mount gdrive-reports" in plan.stdout  # absent, validated by rclone all the same
    records = json.loads(record.read_text())
    assert any(r["argv"][:3] == ["rclone", "config", "providers"] for r in records)
    refused = [" ".join(r["argv"]) for r in records if not allowed(r["what"], r["argv"])]
    assert refused == [], "dry-run ran commands outside the read-only allow-list"
    assert sh(lab, "find /etc /var /run /mnt -xdev -newer /etc/hostname | sort") == before
    assert mounted(lab) == {}


def test_rclone_and_sshfs_mounts_come_up_and_never_expose_the_password_or_key(lab):
    repo = example(lab)
    key_body = [line for line in Path(f"/proc/{lab.pid('lb1')}/root{SFTP_KEY_FILE}").read_text().splitlines()
                if "PRIVATE KEY" not in line]
    with CmdlineWatcher(lab, "lb1") as watcher:
        run = apply(lab, repo, "-v")
    assert mounted(lab) == {"/mnt/reports": "fuse.rclone reports:reports",
                            "/mnt/reports-sshfs": "fuse.sshfs files@192.0.2.12:reports"}
    assert readable(lab)
    sh(lab, "echo from-lb1 > /mnt/reports/written.txt")
    deadline = time.monotonic() + 30  # vfs-cache-mode writes: rclone uploads a few seconds after close
    while lab.exec("lb2", ["cat", "/home/files/reports/written.txt"], check=False).stdout != "from-lb1\n":
        assert time.monotonic() < deadline, "rclone never uploaded the file to lb2"
        time.sleep(0.2)
    assert "Read-only file system" in sh(lab, "touch /mnt/reports-sshfs/x 2>&1", check=False)
    assert sh(lab, "stat -c '%U %G %a' /mnt/reports").split() == ["root", "root", "755"]

    # the secrets and the obscured password (rclone can reveal it) went nowhere but the 0600 files
    conf = sh(lab, "cat /etc/reconcile/mount/reports/rclone.conf")
    obscured = re.search(r"^pass = (\S+)$", conf, re.M).group(1)
    secrets = [SFTP_PASSWORD, obscured, *key_body]
    assert watcher.samples > 5 and any("rclone" in s and "mount" in s for s in watcher.seen.values()), \
        "the sampler never saw rclone mount run"
    assert any("sshfs" in s for s in watcher.seen.values())
    exposed = [s for s in watcher.seen.values() if any(x in s for x in secrets)]
    assert exposed == [], "a secret showed in a process's argv or environment"
    assert "rclone obscure -" in run.stderr  # the verbose log is there
    plan = lab.reconcile("lb1", "--dry-run", "--repo", repo, "-o", "json")
    status = lab.reconcile("lb1", "status", "-o", "json", check=False)
    for text in (run.stdout, run.stderr, plan.stdout, status.stdout, status.stderr):
        assert not any(x in text for x in secrets)
    checkout = shlex.quote(str(Path(__file__).resolve().parents[2]))
    grep = " ".join(f"-e {shlex.quote(x)}" for x in secrets)
    leaks = sh(lab, f"grep -rlF {grep} /var/lib/reconcile /var/log /run /var/cache/reconcile /etc/reconcile/mount; "
                    f"find /tmp -path {checkout} -prune -o -type f -exec grep -lF {grep} {{}} +; true")
    assert sorted(leaks.split()) == ["/etc/reconcile/mount/reports-sshfs/identity",
                                     "/etc/reconcile/mount/reports/rclone.conf"]
    with CmdlineWatcher(lab, "lb1") as now:  # the running daemons: argv and environment
        time.sleep(0.2)
    assert now.samples and not [s for s in now.seen.values() if any(x in s for x in secrets)]
    modes = sh(lab, "stat -c '%a %n' /etc/reconcile/mount/reports /etc/reconcile/mount/reports/rclone.conf "
                    "/etc/reconcile/mount/reports-sshfs/identity").split("\n")
    assert [m.split()[0] for m in modes if m] == ["700", "600", "600"]

    again = apply(lab, repo)
    assert "3 in-sync" in again.stdout and "changed" not in again.stdout
    assert lab.reconcile("lb1", "--dry-run", "--repo", repo).returncode == 0


def kill_then_apply(lab: Lab, repo: str) -> tuple[dict[str, int], float]:
    """Kill both FUSE daemons: the plan names both mounts dead, an apply mounts them again.
    Returns the old daemons and the seconds the apply took."""
    old = daemons(lab)
    sh(lab, f"kill -9 {old['/mnt/reports']} {old['/mnt/reports-sshfs']}")
    gone = sh(lab, "ls /mnt/reports 2>&1", check=False)
    assert "Transport endpoint is not connected" in gone or "Software caused connection abort" in gone, gone
    plan = lab.reconcile("lb1", "--dry-run", "--repo", repo)
    assert plan.returncode == 2 and plan.stdout.count("state: dead → mounted") == 2, plan.stdout
    started = time.monotonic()
    run = apply(lab, repo)
    took = time.monotonic() - started
    assert "Result: 2 drift-corrected" in run.stdout, run.stdout
    assert readable(lab)
    return old, took


def test_a_killed_fuse_daemon_is_remounted_by_the_next_apply(lab):
    converge(lab)
    _old, took = kill_then_apply(lab, example(lab))
    assert set(daemons(lab)) == set(MOUNTS)
    print(f"\nremount of 2 dead FUSE mounts by `reconcile apply`: {took:.2f} s (wall, CLI in the node)")


@contextlib.contextmanager
def agent(lab: Lab) -> Iterator[Path]:
    """`reconcile agent` in lb1 following a local repository of the example, ready; its log."""
    work = lab.shared / "agent-repo"
    work.mkdir(exist_ok=True)
    (work / "mounts.yaml").write_text(EXAMPLE)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "mounts"]):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True, env={**os.environ, **GIT_ENV})
    log_path = lab.shared / "agent.log"
    log = open(log_path, "w")
    proc = lab.popen("lb1", ["reconcile", "agent", "--repo", str(work), "--resync", "10m"], stdout=log,
                     stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while '"ready": true' not in sh(lab, "reconcile status -o json", check=False):
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        yield log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


def kill_until_back(lab: Lab, point: str, log: Path, quiet: float = 1.5) -> float:
    """Kill the FUSE daemon of `point` after `quiet` seconds (the agent runs a drift event at
    once); seconds until the mount reads again through a new daemon."""
    pid = daemons(lab)[point]
    time.sleep(quiet)
    started = time.monotonic()
    sh(lab, f"kill -9 {pid}")
    while not (readable(lab) and daemons(lab).get(point, pid) != pid):
        assert time.monotonic() - started < 30, log.read_text()[-3000:]
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_agent_remounts_a_killed_fuse_daemon_at_once(lab):
    converge(lab)
    with agent(lab) as log:
        took = [kill_until_back(lab, point, log) for point in MOUNTS]
        print(f"\nagent: FUSE daemon killed → mount readable again: rclone {took[0]:.2f} s, sshfs {took[1]:.2f} s")
        # killed again at once, before the agent could follow the new daemon: still seen
        for point in MOUNTS:
            kill_until_back(lab, point, log, quiet=0)


def test_other_options_are_drift_and_are_repaired(lab):
    converge(lab)
    repo = example(lab)
    pid = daemons(lab)["/mnt/reports-sshfs"]
    sh(lab, "mount -o remount,bind,rw,exec /mnt/reports-sshfs")
    plan = lab.reconcile("lb1", "--dry-run", "--repo", repo)
    # a list changes element by element: the added option, nothing cut
    assert "readOnly: false → true" in plan.stdout and "      options:\n        + noexec\n" in plan.stdout, plan.stdout
    run = apply(lab, repo)
    assert "drift corrected" in run.stdout
    assert daemons(lab)["/mnt/reports-sshfs"] == pid  # flags only: a bind remount, the mount stayed up
    assert "Read-only file system" in sh(lab, "touch /mnt/reports-sshfs/x 2>&1", check=False)
    # a changed option in git mounts anew with it
    repo = example(lab, **{"dir-cache-time: 10s": "dir-cache-time: 20s"})
    apply(lab, repo)
    assert "--dir-cache-time=20s" in sh(lab, f"cat /proc/{daemons(lab)['/mnt/reports']}/cmdline | tr '\\0' ' '")
    apply(lab, repo, rc=0)


BIND = """\
apiVersion: reconcile/v1
kind: Mount
metadata: {{name: {name}}}
spec:
  node: lb1
  path: {path}
  type: {type}
{block}"""


def test_a_bind_mount_made_by_hand_is_left_alone(lab):
    converge(lab)
    sh(lab, "mkdir -p /var/tmp/src /var/tmp/handmade /mnt/scratch && echo mine > /var/tmp/src/f && "
            "mount --bind /var/tmp/src /var/tmp/handmade && mount --bind /var/tmp/src /mnt/scratch")
    scratch = BIND.format(name="scratch", path="/mnt/scratch", type="tmpfs", block="  tmpfs: {size: 8M}")
    repo = tree(lab, "hand", EXAMPLE, scratch)
    run = apply(lab, repo, rc=1)  # a mount of ours at /mnt/scratch would hide the hand-made one
    assert "x Mount scratch (failed)" in run.stdout and "reconcile did not make" in run.stdout
    assert "Mount handmade" not in run.stdout  # not ours: not even observed
    assert sh(lab, "cat /mnt/scratch/f /var/tmp/handmade/f") == "mine\nmine\n"
    # our own tmpfs, unmounted by hand and replaced by a hand-made bind mount (which may get
    # the very mount id ours had): removing the manifest leaves the hand-made one
    sh(lab, "umount /mnt/scratch")
    apply(lab, repo)
    assert mounted(lab)["/mnt/scratch"].startswith("tmpfs ")
    sh(lab, "umount /mnt/scratch && mount --bind /var/tmp/src /mnt/scratch")
    apply(lab, tree(lab, "hand", EXAMPLE))
    assert sh(lab, "cat /mnt/scratch/f /var/tmp/handmade/f") == "mine\nmine\n"
    sh(lab, "umount /mnt/scratch /var/tmp/handmade && rmdir /mnt/scratch")


def test_a_busy_mount_is_not_torn_away_unless_the_manifest_says_so(lab):
    converge(lab)
    user = lab.popen("lb1", ["sh", "-c", "cd /mnt/reports && exec sleep 300"])
    try:
        time.sleep(0.3)
        gone = tree(lab, "gone")
        run = apply(lab, gone, "--allow-mass-prune", rc=1)
        assert "/mnt/reports is busy (used by sleep" in run.stdout and "onBusy: lazy" in run.stdout, run.stdout
        assert "/mnt/reports" in mounted(lab) and "/mnt/reports-sshfs" not in mounted(lab)
        # the manifest says so: state absent with onBusy lazy detaches it even while in use
        lazy = example(lab, **{"  allowOther: true": "  state: absent\n  onBusy: lazy\n  allowOther: true"})
        run = apply(lab, lazy, "--allow-mass-prune")
        assert "/mnt/reports" not in mounted(lab)
        assert user.poll() is None  # its user keeps running in the detached tree
    finally:
        user.kill()
        user.wait(10)


def test_removal_from_git_is_clean(lab):
    converge(lab)
    apply(lab, tree(lab, "gone"), "--allow-mass-prune")
    assert mounted(lab) == {} and daemons(lab) == {}
    assert "ssh " not in sh(lab, "ps -eo args")
    left = sh(lab, "find /etc/reconcile/mount /var/cache/reconcile/mount /var/lib/reconcile/mount /mnt -mindepth 1")
    assert left.strip() == "", left
    assert lab.reconcile("lb1", "--dry-run", "--repo", tree(lab, "gone")).returncode == 0


def test_bad_input_is_refused_with_file_line_and_field_and_mounts_nothing(lab):
    # whatever an earlier test left is pruned; with nothing left, lb1 is in no placement (exit 1)
    apply(lab, tree(lab, "gone"), "--allow-mass-prune", rc=None)
    assert mounted(lab) == {}
    bad = [
        BIND.format(name="root", path="/", type="tmpfs", block=""),
        BIND.format(name="etc", path="/etc", type="tmpfs", block=""),
        BIND.format(name="rel", path="mnt/x", type="tmpfs", block=""),
        BIND.format(name="smuggle", path="/mnt/x", type="tmpfs", block='  options: ["size=8M,bind"]'),
        BIND.format(name="inline", path="/mnt/y", type="cifs",
                    block="  cifs: {server: f.example.test, share: s, user: u, password: Inline.Secret-99}"),
    ]
    repo = tree(lab, "bad", EXAMPLE, *bad)
    run = lab.reconcile("lb1", "apply", "--repo", repo)
    assert run.returncode == 1
    err = run.stderr
    for i, field in ((1, "spec.path"), (2, "spec.path"), (3, "spec.path"), (4, "spec.options[0]"),
                     (5, "spec.cifs.password")):
        assert re.search(rf"m{i}\.yaml:\d+: {re.escape(field)}: ", err), err
    assert "Inline.Secret-99" not in run.stdout + err
    assert mounted(lab) == {} and daemons(lab) == {}
    assert sh(lab, "find /etc/reconcile/mount -mindepth 1").strip() == ""
