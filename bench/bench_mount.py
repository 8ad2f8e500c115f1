#!/usr/bin/env python3
"""Benchmark of the Mount kind on real FUSE mounts in a lab node (prints numbers).

    .venv/bin/python bench/bench_mount.py [--kills 10] [--systemd]

On a two-node lab with the SFTP server in lb2, lb1 mounts lb2's reports folder through
rclone (/mnt/reports) and sshfs (/mnt/reports-sshfs), from desired-state/mounts.yaml.
With --systemd the nodes boot systemd and the mounts are mount units (systemd runs the
FUSE daemons through their mount helpers).

1. mount from nothing: `reconcile apply` (wall, inside lb1) for the two mounts;
2. plan with nothing to do: `reconcile --dry-run` (wall) and its observe time;
3. remount after a FUSE crash by `reconcile apply`: kill -9 of the daemon, then an apply;
   time from the kill until a file reads through the mount again (measured inside lb1);
4. remount after a FUSE crash by the agent (`reconcile agent` following a local repository):
   kill -9 of the daemon, time until a file reads again through a new daemon.

Needs root (the lab). Nothing leaves the lab's namespaces; the lab is torn down at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import temporary_lab  # noqa: E402
from reconcilers.mount.fuse import DAEMONS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}

# Runs inside lb1: kill the FUSE daemon of a mount point N times; after each kill either run
# `reconcile apply` (mode "apply") or wait for the agent (mode "agent"); print the seconds
# from the kill until README.txt reads again through a new daemon, as JSON.
KILL = r"""
import json, os, signal, subprocess, sys, time
point, n, mode, repo = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DAEMONS = [d.encode() for d in sys.argv[5].split(",")]

def daemon():
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                argv = open(f"/proc/{e.name}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if os.path.basename(argv[0]) in DAEMONS and point.encode() in argv:
                return int(e.name)

def reads():
    try:
        with open(point + "/README.txt") as f:
            return "Served over SFTP" in f.read()
    except OSError:
        return False

out = []
for _ in range(n):
    time.sleep(1.5)  # a quiet second before each kill: the agent acts on a drift event at once
    old = daemon()
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    if mode == "apply":
        while reads():  # the kernel notices the daemon's death at once; be sure it did
            time.sleep(0.001)
        subprocess.run(["reconcile", "apply", "--repo", repo], check=True, capture_output=True)
    while not (reads() and daemon() not in (None, old)):
        if time.monotonic() - t0 > 60:
            sys.exit(f"{point} not back after 60 s")
        time.sleep(0.005)
    out.append(time.monotonic() - t0)
print(json.dumps(out))
"""


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    v = sorted(values)
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    return f"p50 {statistics.median(v):.2f} s, p90 {p90:.2f} s, max {v[-1]:.2f} s (n={len(v)})"


def timed(lab, *argv: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    r = lab.exec("lb1", list(argv), check=False, timeout=300)
    return time.monotonic() - t0, r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=10, help="FUSE crashes per mount and per repairer")
    p.add_argument("--systemd", action="store_true", help="nodes boot systemd: the mounts are mount units")
    args = p.parse_args()
    daemons = ",".join(DAEMONS)
    with temporary_lab(nodes=2, systemd=args.systemd, sftp=True, prefix="bm") as lab:
        repo = lab.shared / "repo"
        repo.mkdir()
        (repo / "mounts.yaml").write_text((ROOT / "desired-state" / "mounts.yaml").read_text())
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env={**os.environ, **GIT_ENV})
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env={**os.environ, **GIT_ENV})
        subprocess.run(["git", "commit", "-q", "-m", "mounts"], cwd=repo, check=True, env={**os.environ, **GIT_ENV})

        took, r = timed(lab, "reconcile", "apply", "--repo", str(repo))
        status = json.loads(lab.exec("lb1", ["cat", "/var/lib/reconcile/status.json"]).stdout)
        print(f"mount from nothing (rclone sftp + sshfs): apply {took:.2f} s wall, engine {status['seconds']:.2f} s "
              f"(rc {r.returncode})")

        plans, observes = [], []
        for _ in range(5):
            took, r = timed(lab, "reconcile", "--dry-run", "--repo", str(repo), "-o", "json")
            plans.append(took)
            observes.append(json.loads(r.stdout)["timings"].get("observe.Mount", 0.0))
        print(f"plan with nothing to do: {summary(plans)} wall; observe (mountinfo + one stat) "
              f"{statistics.median(observes) * 1000:.0f} ms median")

        for point in ("/mnt/reports", "/mnt/reports-sshfs"):
            r = lab.exec("lb1", ["/usr/bin/python3", "-c", KILL, point, str(args.kills), "apply", str(repo), daemons],
                         timeout=900)
            print(f"FUSE daemon of {point} killed → readable again, by `reconcile apply`: {summary(json.loads(r.stdout))}")

        log = open(lab.shared / "agent.log", "w")
        agent = lab.popen("lb1", ["reconcile", "agent", "--repo", str(repo), "--resync", "10m", "-v"],
                          stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while '"ready": true' not in lab.exec("lb1", ["reconcile", "status", "-o", "json"], check=False).stdout:
                if time.monotonic() > deadline:
                    raise SystemExit("the agent did not get ready")
                time.sleep(0.2)
            for point in ("/mnt/reports", "/mnt/reports-sshfs"):
                r = lab.exec("lb1", ["/usr/bin/python3", "-c", KILL, point, str(args.kills), "agent", str(repo),
                                     daemons], timeout=900, check=False)
                if r.returncode:
                    log.flush()
                    raise SystemExit(f"{r.stderr}\n--- agent log\n{(lab.shared / 'agent.log').read_text()[-4000:]}")
                print(f"FUSE daemon of {point} killed → readable again, by the agent: {summary(json.loads(r.stdout))}")
        finally:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
