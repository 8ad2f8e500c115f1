#!/usr/bin/env python3
"""Benchmark of lab nodes that boot a real systemd (prints numbers).

    .venv/bin/python bench/bench_systemd_lab.py [--nodes 2] [--rounds 3] [--no-converge]

1. boot: `Lab.up(systemd=True)` of N nodes, R times: the wall time of `up` (LXC start to
   `systemctl is-system-running` = running on every node) and systemd's own boot time per
   node (its start to the end of boot); `down` time.
2. memory per node, from the node's memory control group (lxc.payload.<lab>-<node>):
   anonymous memory (rss), tmpfs (shmem: the overlay's upper layer, /run, the journal) and
   the total charged, right after boot (Debian's services as installed: Corosync, Pacemaker,
   HAProxy, journald, logind, dbus) and, unless --no-converge, after the agent installed
   as a service converged desired-state/ (with a DC, containers, a domain join, SFTP mounts).
3. the first convergence itself: `reconcile agent install` on every node at once, to
   every agent ready at the tree's revision.

Needs root (the lab). Nothing leaves the lab's namespaces; the lab is torn down at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.cli import DEFAULT_REPO  # noqa: E402
from controller.lab import Lab, temporary_lab  # noqa: E402
from controller.lab import systemd_node  # noqa: E402

MIB = 1024 * 1024
GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "b@example.test", "GIT_COMMITTER_NAME": "Bench",
           "GIT_COMMITTER_EMAIL": "b@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def memory(lab: Lab, node: str) -> dict[str, float]:
    """MiB charged to the node's memory cgroup (v1 memory.stat, hierarchical totals)."""
    folder = Path("/sys/fs/cgroup/memory") / f"lxc.payload.{systemd_node.container_name(lab.name, node)}"
    stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
    return {"rss": int(stat["total_rss"]) / MIB, "shmem": int(stat["total_shmem"]) / MIB,
            "charged": int((folder / "memory.usage_in_bytes").read_text()) / MIB}


def show_memory(label: str, samples: list[dict[str, float]]) -> None:
    def med(key: str) -> str:
        values = [s[key] for s in samples]
        return f"{statistics.median(values):.0f} (range {min(values):.0f}-{max(values):.0f})"

    print(f"  {label}: rss {med('rss')} MiB, tmpfs {med('shmem')} MiB, charged {med('charged')} MiB per node")


def bench_boot(nodes: int, rounds: int) -> None:
    ups, boots, downs, mem = [], [], [], []
    for _ in range(rounds):
        started = time.monotonic()
        with temporary_lab(nodes=nodes, systemd=True) as lab:
            ups.append(time.monotonic() - started)
            boots += list(lab.record["bootSeconds"].values())
            time.sleep(2)  # the services settle (Pacemaker's first election aside)
            mem += [memory(lab, n) for n in lab.nodes]
            t = time.monotonic()
            lab.down()
            downs.append(time.monotonic() - t)
    print(f"boot, {nodes} nodes x {rounds} rounds:")
    print(f"  lab up (LXC start to `running` on every node): median {statistics.median(ups):.2f} s, "
          f"range {min(ups):.2f}-{max(ups):.2f} s")
    print(f"  systemd's own boot time per node: median {statistics.median(boots):.2f} s, "
          f"range {min(boots):.2f}-{max(boots):.2f} s")
    print(f"  lab down: median {statistics.median(downs):.2f} s")
    show_memory("fresh node (Debian's services as installed)", mem)


def bench_converged(nodes: int) -> None:
    # sftp: desired-state/'s Mount examples need the lab's SFTP server and its secrets
    with temporary_lab(nodes=nodes, domain_controller=True, systemd=True, sftp=True) as lab:
        work, origin = lab.shared / "repo", lab.shared / "origin.git"
        shutil.copytree(DEFAULT_REPO, work)
        env = {**os.environ, **GIT_ENV}
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "example"]):
            subprocess.run(["git", *args], cwd=work, check=True, env=env, capture_output=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(origin)], check=True, env=env, capture_output=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
        booted = [n for n in lab.nodes if n != "dc1"]  # the DC has no systemd
        started = time.monotonic()
        installs = [lab.popen(n, ["reconcile", "agent", "install", "--repo", str(origin)], stdout=subprocess.DEVNULL)
                    for n in booted]
        for proc in installs:
            proc.wait(600)
        first = time.monotonic() - started
        for node in booted:
            deadline = time.monotonic() + 300
            while True:
                r = lab.exec(node, ["reconcile", "status", "-o", "json"], check=False)
                agent = (json.loads(r.stdout) if r.stdout.strip() else {}).get("agent") or {}
                if agent.get("ready") and agent.get("revision") == head:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{node} did not converge: {agent.get('message')}")
                time.sleep(0.5)
        converged = time.monotonic() - started
        states = {n: lab.exec(n, ["systemctl", "is-system-running"], check=False).stdout.strip() for n in booted}
        time.sleep(2)
        print(f"first convergence of desired-state/ by the agent installed as a service ({nodes} fresh nodes + DC):")
        print(f"  every install returned (first runs done): {first:.1f} s; every agent ready: {converged:.1f} s; "
              f"systemd afterwards: {states}")
        show_memory("converged node with the agent", [memory(lab, n) for n in booted])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-converge", action="store_true")
    args = p.parse_args()
    if args.rounds:
        bench_boot(args.nodes, args.rounds)
    if not args.no_converge:
        bench_converged(args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
