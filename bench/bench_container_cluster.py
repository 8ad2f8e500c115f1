#!/usr/bin/env python3
"""Benchmark of Pacemaker-placed Containers (spec.cluster) on real Corosync 3 + Pacemaker
2.1 + LXC 5 in two lab nodes (prints numbers).

    .venv/bin/python bench/bench_container_cluster.py [--containers 5] [--rounds 10] [--switchovers 3]

1. from empty nodes: `reconcile apply` started on both nodes at once with a Cluster and N
   busybox Containers placed by Pacemaker; time until both applies returned, and until
   Pacemaker has started all N (`crm_resource --wait`).
2. the agent's cost on a converged node: `ContainerReconciler.observe()` (one `lxc-ls`, the
   configs, one `ip`, one `cibadmin --query --local`) and `reconcile --dry-run` with nothing
   to do, end to end.
3. switchover: `pacemakerd --shutdown` on a node running containers, until all N run on
   the other node (lxc-ls there); then `reconcile apply` on the stopped node starts
   Pacemaker again and gives its copies their node attribute back (timed too).
4. removal: the manifests leave git; `reconcile apply` on the DC (stop through Pacemaker,
   remove the primitives, destroy its copies), then on the other node.

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

from controller.lab import Lab, temporary_lab  # noqa: E402
from reconcilers.pacemaker.tools import parse_crm_mon  # noqa: E402

NODES = ("lb1", "lb2")
CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
  properties: {no-quorum-policy: stop, dc-deadtime: 5s}
"""

OBSERVE = """\
import json, sys, time
from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.lxc.reconciler import ContainerReconciler
repo, node_name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
tree = load_tree(repo)
out = {"observe": []}
for _ in range(rounds):
    rec = ContainerReconciler()
    node = Node(node_name, Runner(dry_run=True, recording=True))
    rec.desired(tree, node)
    t = time.perf_counter()
    out["count"] = len(rec.observe(node))
    out["observe"].append(time.perf_counter() - t)
    out["calls"] = len(node.runner.records)
print(json.dumps(out))
"""


def manifest(i: int) -> str:
    return f"""\
apiVersion: reconcile/v1
kind: Container
metadata: {{name: pc{i:02d}}}
spec:
  cluster: web
  template: busybox
  limits: {{memory: 32M}}
  network: {{type: bridge, bridge: pcbr0, address: 198.51.100.{10 + i}/24, bridgeAddress: 198.51.100.1/24}}
  init: [/bin/httpd, -f, -p, "80", -h, /www]
  files: {{/www/index.html: "pc{i:02d}\\n"}}
  stopTimeout: 1s
"""


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"median {statistics.median(values) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   (n={len(values)})"


def active(lab: Lab, node: str) -> dict[str, list[str]]:
    r = lab.exec(node, ["crm_mon", "-1", "--output-as=xml"], check=False)
    return parse_crm_mon(r.stdout).active if r.returncode == 0 else {}


def running(lab: Lab, node: str) -> set[str]:
    out = lab.exec(node, ["lxc-ls", "--running", "-1"]).stdout.split()
    return {n for n in out if n.startswith("pc")}


def dc(lab: Lab) -> str:
    for node in NODES:
        r = lab.exec(node, ["crm_mon", "-1", "--output-as=xml"], check=False)
        if r.returncode == 0 and parse_crm_mon(r.stdout).dc:
            return parse_crm_mon(r.stdout).dc or ""
    raise SystemExit("no DC")


def apply_both(lab: Lab, repo: Path, *extra: str) -> float:
    t = time.perf_counter()
    procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(repo), *extra], stdout=-1, stderr=-1, text=True)
             for n in NODES}
    for node, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"{node}: apply exited {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}")
    return time.perf_counter() - t


def settle(lab: Lab) -> None:
    lab.exec(dc(lab), ["crm_resource", "--wait", "--timeout=120s"], timeout=140)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--switchovers", type=int, default=3)
    args = ap.parse_args()
    n = args.containers
    if not 1 <= n <= 50:
        ap.error("--containers: 1..50")
    names = {f"pc{i:02d}" for i in range(n)}
    roots = sorted(Path("/sys/fs/cgroup").glob("*/notify_on_release"))
    before = {p: p.read_text() for p in roots}  # the lxc agent sets one (see the lab test)
    try:
        with temporary_lab(nodes=2, prefix="bp") as lab:
            repo = lab.shared / "repo"
            repo.mkdir()
            (repo / "cluster.yaml").write_text(CLUSTER)
            (repo / "containers.yaml").write_text("---\n".join(manifest(i) for i in range(n)))
            print(f"Pacemaker-placed Container benchmark: {n} busybox containers, lab {lab.name}, "
                  "nodes lb1 lb2 (Corosync 3, Pacemaker 2.1, LXC 5, real)")

            t = time.perf_counter()
            applied = apply_both(lab, repo)
            settle(lab)
            started = time.perf_counter() - t
            where = active(lab, "lb1")
            if set(where) != names or sum(len(running(lab, node)) for node in NODES) != n:
                raise SystemExit(f"not all started once: {where}")
            print(f"1. empty nodes → cluster + {n} containers defined on both, started once: "
                  f"applies {applied:5.1f} s, all started {started:5.1f} s")

            for node in NODES:
                r = lab.exec(node, ["python3", "-c", OBSERVE, str(repo), node, str(args.rounds)], cwd=str(Path.cwd()))
                obs = json.loads(r.stdout)
                print(f"2. {node}: observe {obs['count']} placed containers ({obs['calls']} processes): "
                      f"{ms(obs['observe'])}")
            cli = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                r = lab.exec("lb1", ["reconcile", "--dry-run", "--repo", str(repo), "-o", "json"], check=False)
                cli.append(time.perf_counter() - t)
                if r.returncode != 0:
                    raise SystemExit(f"plan not in sync: {r.stdout[-2000:]}")
            print(f"   lb1: reconcile --dry-run with nothing to do:  {ms(cli)}")

            moves, rejoins = [], []
            for _ in range(args.switchovers):
                holder = max(NODES, key=lambda node: len(running(lab, node)))
                survivor = NODES[1 - NODES.index(holder)]
                t = time.perf_counter()
                lab.exec(holder, ["pacemakerd", "--shutdown"], timeout=120)
                while running(lab, survivor) != names:
                    if time.perf_counter() - t > 120:
                        raise SystemExit(f"switchover to {survivor} did not finish")
                    time.sleep(0.1)
                moves.append(time.perf_counter() - t)
                t = time.perf_counter()
                r = lab.exec(holder, ["reconcile", "apply", "--repo", str(repo)], check=False, timeout=300)
                rejoins.append(time.perf_counter() - t)
                if r.returncode != 0:
                    raise SystemExit(f"rejoin apply failed: {r.stdout[-2000:]}")
                settle(lab)
            print(f"3. switchover of {n} (pacemakerd --shutdown on their node, until all run on the other): "
                  f"{ms(moves)}")
            print(f"   reconcile apply on the stopped node (Pacemaker started, attributes back): {ms(rejoins)}")

            (repo / "containers.yaml").unlink()
            writer = dc(lab)
            t = time.perf_counter()
            r = lab.exec(writer, ["reconcile", "apply", "--repo", str(repo), "--allow-mass-prune"], check=False,
                         timeout=600)
            on_dc = time.perf_counter() - t
            t = time.perf_counter()
            r2 = lab.exec(NODES[1 - NODES.index(writer)], ["reconcile", "apply", "--repo", str(repo),
                                                           "--allow-mass-prune"], check=False, timeout=600)
            other = time.perf_counter() - t
            if r.returncode or r2.returncode or any(running(lab, node) for node in NODES):
                raise SystemExit(f"removal failed:\n{r.stdout[-2000:]}\n{r2.stdout[-2000:]}")
            print(f"4. removal of {n}: on the DC (stop through Pacemaker, primitives, its copies) {on_dc:5.1f} s, "
                  f"then on the other node {other:5.1f} s")
    finally:
        for path, value in before.items():
            if path.read_text() != value:
                path.write_text(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
