#!/usr/bin/env python3
"""Benchmark: validate and plan 100, 1,000 and 10,000 generated objects.

Generates a tree of Backend manifests (5 servers each, 50 documents per file, in nested
folders) plus one Cluster, then times:
  load+validate  load_tree: YAML parse, pydantic, whole-tree checks
  plan           desired + observe + jsonpatch diff for every object, against a synthetic
                 observed state in which 10 % of the objects differ and 5 % are missing
Medians of 3 runs per size, each after the previous tree was collected (not timed).
Prints one line per size and the growth factor. Usage: bench_plan.py [SIZES...]
"""
from __future__ import annotations

import gc
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import reconcilers  # noqa: E402
from controller.engine import Engine  # noqa: E402
from controller.loader import load_tree  # noqa: E402
from controller.state import Inventory  # noqa: E402
from reconcilers.base import Desired, Node, Reconciler, Runner  # noqa: E402

OBSERVED: dict[str, dict] = {}


class SyntheticBackends(Reconciler):
    """Desired from the manifests; observed from the synthetic state (no daemon)."""

    kind = "Backend"

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({
            "mode": m.spec.mode, "balance": m.spec.balance,
            "servers": {s.name: {"address": s.address, "port": s.port, "weight": s.weight, "backup": s.backup}
                        for s in m.spec.servers}})
            for m in tree.on_node("Backend", node.name)}}

    def observe(self, node):
        return {self.kind: OBSERVED}


class NoCluster(Reconciler):
    kind = "Cluster"

    def desired(self, tree, node):
        return {self.kind: {}}

    def observe(self, node):
        return {self.kind: {}}


def generate(root: Path, n: int) -> None:
    (root / "cluster.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Cluster\nmetadata: {name: web}\nspec:\n  stack: none\n  nodes:\n"
        "    - {name: lb1, id: 1, address: 192.0.2.11/24}\n    - {name: lb2, id: 2, address: 192.0.2.12/24}\n")
    per_file = 50
    for f in range(0, n, per_file):
        folder = root / f"team-{f // 1000}" / f"svc-{(f // per_file) % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        docs = []
        for i in range(f, min(n, f + per_file)):
            servers = "\n".join(
                f"    - {{name: s{j}, address: 198.51.{(i // 250) % 256}.{(i % 250) + 1}, port: {8000 + j}, weight: {j + 1}}}"
                for j in range(5))
            docs.append(f"apiVersion: reconcile/v1\nkind: Backend\nmetadata:\n  name: be-{i}\n  labels: {{team: t{i % 7}}}\n"
                        f"spec:\n  cluster: web\n  mode: http\n  balance: roundrobin\n  servers:\n{servers}\n")
        (folder / f"backends-{f}.yaml").write_text("---\n".join(docs))


def synthetic_observed(n: int, rng: random.Random) -> dict[str, dict]:
    out = {}
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            continue  # missing: a create
        servers = {f"s{j}": {"address": f"198.51.{(i // 250) % 256}.{(i % 250) + 1}", "port": 8000 + j,
                             "weight": j + 1, "backup": False} for j in range(5)}
        if r < 0.15:
            servers["s2"]["weight"] = 99  # differs: an update
        out[f"be-{i}"] = {"mode": "http", "balance": "roundrobin", "servers": servers}
    return out


def measure(n: int, repeat: int = 3) -> tuple[float, float, int]:
    global OBSERVED
    rng = random.Random(n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        generate(root, n)
        OBSERVED = synthetic_observed(n, rng)
        loads, plans = [], []
        changes = 0
        for _ in range(repeat):
            # The previous tree is collected before the clock starts: load_tree would collect
            # it at its start (what an agent does once per revision), a cost of the last
            # tree's size, not of this one's.
            tree = record = engine = None
            gc.unfreeze()
            gc.collect()
            t0 = time.perf_counter()
            tree = load_tree(root)
            t1 = time.perf_counter()
            engine = Engine(tree, Node("lb1", Runner(dry_run=True), Path(tmp) / "state"),
                            inventory=Inventory(Path(tmp) / "state"))
            record = engine.plan()
            t2 = time.perf_counter()
            loads.append(t1 - t0)
            plans.append(t2 - t1)
            changes = sum(1 for o in record.objects if o.status == "pending")
        return statistics.median(loads), statistics.median(plans), changes


def main() -> None:
    reconcilers.REGISTRY["Backend"] = f"{__name__}:SyntheticBackends"
    reconcilers.REGISTRY["Frontend"] = f"{__name__}:SyntheticBackends"  # the HAProxy reconciler owns both
    reconcilers.REGISTRY["Cluster"] = f"{__name__}:NoCluster"
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 10000]
    print(f"{'objects':>8} {'load+validate':>14} {'plan':>8} {'total':>8} {'per object':>11} {'changes':>8}")
    previous = None
    per_object: list[float] = []
    for n in sizes:
        load, plan, changes = measure(n)
        total = load + plan
        growth = f"  x{total / previous[1]:.1f} for x{n / previous[0]:.0f} objects" if previous else ""
        print(f"{n:>8} {load:>13.3f}s {plan:>7.3f}s {total:>7.3f}s {total / n * 1e6:>9.0f}µs {changes:>8}{growth}")
        previous = (n, total)
        per_object.append(total / n)
    if len(sizes) > 1:
        print(f"cost per object, {sizes[-1]:,} objects against {sizes[0]:,}: x{per_object[-1] / per_object[0]:.2f} "
              f"(largest against smallest of all sizes: x{max(per_object) / min(per_object):.2f})")


if __name__ == "__main__":
    main()
