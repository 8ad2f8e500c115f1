#!/usr/bin/env python3
"""Benchmark of the Container reconciler on real LXC in a lab node (prints numbers).

    .venv/bin/python bench/bench_container.py [--containers 50] [--rounds 20]

1. converge from nothing: `reconcile apply` creating and starting N busybox containers
   (busybox httpd as init, each on a node-local bridge, a memory limit and a file).
2. observe N containers in one batch: `ContainerReconciler.observe()` inside the node
   (one `lxc-ls`, N config files read, one `ip -j -d addr show`); and, for the record, the
   bare `lxc-ls -f -F NAME,STATE,PID`, three plain `lxc-ls -1` and the python3-lxc bindings
   doing the same walk, all timed inside the node.
3. plan with nothing to do: `reconcile --dry-run` end to end (a new process, as an
   operator runs it) and the engine's own time for the plan inside it.
4. a drifted plan: one container stopped by hand, `reconcile --dry-run` finds it.

Needs root (the lab). Nothing leaves the lab's namespaces; the lab is torn down at the end.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import temporary_lab  # noqa: E402

NODE = "lb1"

OBSERVE = """\
import json, subprocess, sys, time
from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.lxc.reconciler import ContainerReconciler
repo, rounds = sys.argv[1], int(sys.argv[2])
tree = load_tree(repo)
out = {"observe": [], "lxc-ls -f": [], "lxc-ls -1 x3": [], "bindings": []}
for _ in range(rounds):
    rec = ContainerReconciler()
    node = Node("lb1", Runner(dry_run=True, recording=True))
    rec.desired(tree, node)
    t = time.perf_counter()
    out["count"] = len(rec.observe(node)["Container"])
    out["observe"].append(time.perf_counter() - t)
    out["calls"] = len(node.runner.records)
    t = time.perf_counter()
    subprocess.run(["lxc-ls", "-f", "-F", "NAME,STATE,PID", "-P", "/var/lib/lxc"], capture_output=True, check=True)
    out["lxc-ls -f"].append(time.perf_counter() - t)
    t = time.perf_counter()
    for flag in ([], ["--running"], ["--frozen"]):
        subprocess.run(["lxc-ls", "-1", *flag, "-P", "/var/lib/lxc"], capture_output=True, check=True)
    out["lxc-ls -1 x3"].append(time.perf_counter() - t)
    try:
        import lxc
    except ImportError:
        continue
    t = time.perf_counter()
    states = {n: lxc.Container(n, "/var/lib/lxc").state for n in lxc.list_containers(config_path="/var/lib/lxc")}
    out["bindings"].append(time.perf_counter() - t)
print(json.dumps(out))
"""


def manifest(i: int) -> str:
    return f"""\
apiVersion: reconcile/v1
kind: Container
metadata: {{name: c{i:03d}}}
spec:
  nodes: ["*"]
  template: busybox
  limits: {{memory: 32M}}
  network: {{type: bridge, bridge: bench0, address: 198.51.100.{10 + i}/24, bridgeAddress: 198.51.100.1/24}}
  init: [/bin/httpd, -f, -p, "80", -h, /www]
  files: {{/www/index.html: "c{i:03d}\\n"}}
  stopTimeout: 1s
"""


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"median {statistics.median(values) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   (n={len(values)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    n = args.containers
    if not 1 <= n <= 200:
        ap.error("--containers: 1..200 (addresses come from one /24)")

    with temporary_lab(nodes=1, prefix="bc") as lab:
        repo, state = lab.shared / "repo", lab.shared / "state"
        repo.mkdir()
        (repo / "containers.yaml").write_text("---\n".join(manifest(i) for i in range(n)))
        base = ["--repo", str(repo), "--state-dir", str(state)]

        print(f"Container benchmark: {n} busybox containers in lab {lab.name} node {NODE} (LXC 5, real)")
        t = time.perf_counter()
        r = lab.reconcile(NODE, "apply", *base, "-o", "json", timeout=1800)
        took = time.perf_counter() - t
        record = json.loads(r.stdout)
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:])
            return 1
        print(f"1. converge from nothing (create + start {n}):   {took:7.2f} s "
              f"({took / n * 1000:.0f} ms per container; apply.Container {record['timings'].get('apply.Container')} s)")

        r = lab.exec(NODE, ["python3", "-c", OBSERVE, str(repo), str(args.rounds)], cwd=str(Path.cwd()))
        obs = json.loads(r.stdout)
        print(f"2. observe {obs['count']} containers, one batch ({obs['calls']} processes): {ms(obs['observe'])}")
        print(f"   of which lxc-ls -f -F NAME,STATE,PID (3 forks per container): {ms(obs['lxc-ls -f'])}")
        print(f"   for comparison, lxc-ls -1 [--running|--frozen] (3 calls): {ms(obs['lxc-ls -1 x3'])}")
        if obs["bindings"]:
            print(f"   for comparison, python3-lxc list + state (in process): {ms(obs['bindings'])}")

        cli, engine = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            r = lab.reconcile(NODE, "--dry-run", *base, "-o", "json")
            cli.append(time.perf_counter() - t)
            rec = json.loads(r.stdout)
            if r.returncode != 0 or rec["counts"] != {"in-sync": n}:
                print(f"unexpected plan (rc {r.returncode}): {rec['counts']}")
                return 1
            engine.append(rec["seconds"])
        print(f"3. plan with nothing to do, reconcile --dry-run:  {ms(cli)}")
        print(f"   of which the engine's plan (validate, observe, diff): {ms(engine)}")

        lab.exec(NODE, ["lxc-stop", "-k", "-n", "c007"])
        t = time.perf_counter()
        r = lab.reconcile(NODE, "--dry-run", *base, "-o", "json")
        took = time.perf_counter() - t
        counts = json.loads(r.stdout)["counts"]
        print(f"4. plan with one container stopped by hand:     {took * 1000:7.1f} ms  (rc {r.returncode}, {counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
