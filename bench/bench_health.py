#!/usr/bin/env python3
"""Benchmark: what health costs a plan.

In a fresh lab (lb1, lb2, the SFTP server) the embedded desired-state/ without its
DomainJoin (no DC here: a Pacemaker cluster with db and db-vip, a keepalived VIP, HAProxy
with three backends and two frontends, three containers, the rclone and sshfs mounts) is
applied on both nodes until converged. Then, ROUNDS
times alternately on lb1, a plan with `--no-health` and one with health (the default),
and prints the medians and worst of the engine's own time (`seconds` of the run record)
and of the whole `reconcile` process, and each kind's health time (`health.KIND`, from its
own thread, started as soon as the kind has observed). Usage: bench_health.py [ROUNDS]
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.cli import DEFAULT_REPO  # noqa: E402
from controller.lab import temporary_lab  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with temporary_lab(nodes=2, sftp=True, prefix="hb") as lab:  # the Mounts need the lab's SFTP server
        repo = lab.shared / "repo"
        shutil.copytree(DEFAULT_REPO, repo)
        (repo / "domain-join.yaml").unlink()
        for _ in range(4):
            codes = [lab.reconcile(n, "apply", "--repo", str(repo), timeout=600).returncode for n in ("lb1", "lb2")]
            if codes == [0, 0]:
                break
        else:
            raise SystemExit(f"did not converge: {codes}")
        wait = lab.reconcile("lb1", "apply", "--repo", str(repo), "--wait", "--timeout", "120s", "-o", "json",
                             timeout=300)
        print(f"apply --wait on a converged node: exit {wait.returncode}, "
              f"{json.loads(wait.stdout)['wait']['seconds']:.2f}s until Healthy")
        runs: dict[str, list[tuple[float, float]]] = {"--no-health": [], "health": []}
        kinds: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, extra in (("--no-health", ["--no-health"]), ("health", [])):
                started = time.monotonic()
                r = lab.reconcile("lb1", "--dry-run", "--repo", str(repo), "-o", "json", *extra, timeout=300)
                wall = time.monotonic() - started
                rec = json.loads(r.stdout)
                if r.returncode != 0:
                    raise SystemExit(f"plan exit {r.returncode}: {r.stdout[-2000:]}")
                runs[label].append((rec["seconds"], wall))
                for key, seconds in rec["timings"].items():
                    if key.startswith("health."):
                        kinds.setdefault(key, []).append(seconds)
                if label == "health":
                    unhealthy = [f"{o['kind']}/{o['name']} {(o.get('health') or {}).get('status')} "
                                 f"({(o.get('health') or {}).get('reason')}: {(o.get('health') or {}).get('message')})"
                                 for o in rec["objects"]
                                 if (o.get("health") or {}).get("status") not in ("Healthy", None)]  # None: no health
                    if unhealthy:
                        print(f"  (not healthy: {', '.join(unhealthy)})")
        print(f"{'plan of desired-state on lb1':32} {'engine p50':>10} {'max':>7} {'process p50':>12} {'max':>7}")
        for label, values in runs.items():
            engine = [v[0] for v in values]
            wall = [v[1] for v in values]
            print(f"{label:32} {statistics.median(engine):9.3f}s {max(engine):6.3f}s "
                  f"{statistics.median(wall):11.3f}s {max(wall):6.3f}s")
        print("health per kind (in its own thread, overlapping the plan):")
        for key in sorted(kinds):
            print(f"  {key:40} p50 {statistics.median(kinds[key]):.3f}s  max {max(kinds[key]):.3f}s")


if __name__ == "__main__":
    main()
