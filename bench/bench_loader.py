#!/usr/bin/env python3
"""Benchmark: the loader against large and hostile trees.

Each case runs `load_tree` in a fresh Python process and prints its wall time, the peak
memory of that process (VmHWM, the interpreter and imports included: about 35 MB) and
the outcome:
  vips N        N keepalived VirtualIPs on one two-node Cluster (the router id and address
                checks against every other VIP were quadratic: 68-85 s at 10,000)
  frontends N   N Frontends each binding its own VirtualIP's address on port 80 (the VIP
                lookup and the wildcard check were quadratic: 119 s at 10,000)
  containers N  N Containers on one bridge with one bridgeAddress (the bridge agreement
                check was quadratic)
  alias-bomb    a 1 KB file of nested aliases that would expand to 10^9 nodes
  deep          100,000 nested `[` (PyYAML's composer crashed: segmentation fault)
  big-file      a 50 MB manifest file (refused by its size before it is read)
  node-limit    eight files just under 8 MB of valid Backends with 10,000 servers each: the
                most a tree within the size limits can hold, stopped by the tree's node limit
Usage: bench_loader.py [N]   (default 10000)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLUSTER = ("apiVersion: reconcile/v1\nkind: Cluster\nmetadata: {name: web}\nspec:\n  stack: none\n  nodes:\n"
           "    - {name: lb1, id: 1, address: 198.18.0.11/15}\n    - {name: lb2, id: 2, address: 198.18.0.12/15}\n")


def _address(i: int) -> str:
    return f"198.18.{1 + i // 250}.{i % 250 + 1}"  # RFC 2544's benchmark range


def vips(n: int) -> list[str]:
    # 255 router ids per interface: the VIPs are spread over interfaces e0, e1, …
    return [f"apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {{name: vip-{i}}}\nspec:\n  cluster: web\n"
            f"  manager: keepalived\n  address: {_address(i)}/15\n  interface: e{i // 255}\n"
            f"  keepalived: {{routerId: {i % 255 + 1}}}\n" for i in range(n)]


def frontends(n: int) -> list[str]:
    docs = vips(n) + ["apiVersion: reconcile/v1\nkind: Backend\nmetadata: {name: be}\nspec:\n  cluster: web\n"]
    return docs + [f"apiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: fe-{i}}}\nspec:\n  cluster: web\n"
                   f"  bind: [{{address: {_address(i)}, port: 80}}]\n  defaultBackend: be\n" for i in range(n)]


def containers(n: int) -> list[str]:
    return [f"apiVersion: reconcile/v1\nkind: Container\nmetadata: {{name: ct-{i}}}\nspec:\n  node: lb1\n"
            f"  template: busybox\n  network: {{type: bridge, bridge: br0, address: 10.{i // 250}.{i % 250}.2/8, "
            f"bridgeAddress: 10.255.255.1/8}}\n" for i in range(n)]


def alias_bomb() -> str:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        text += f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]\n"
    return text


def write_tree(root: Path, case: str, n: int) -> None:
    root.mkdir()
    if case in ("vips", "frontends", "containers"):
        docs = [CLUSTER] + {"vips": vips, "frontends": frontends, "containers": containers}[case](n)
        for f in range(0, len(docs), 50):
            (root / f"part-{f // 50:05d}.yaml").write_text("---\n".join(docs[f:f + 50]))
    elif case == "alias-bomb":
        (root / "bomb.yaml").write_text(alias_bomb())
    elif case == "deep":
        (root / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif case == "big-file":
        line = "    - {name: s, address: 198.51.100.1, port: 80}\n"
        with open(root / "big.yaml", "w") as f:
            f.write("apiVersion: reconcile/v1\nkind: Backend\nmetadata: {name: big}\nspec:\n  servers:\n")
            for _ in range(50):
                f.write(line * (1_000_000 // len(line)))
    elif case == "node-limit":
        servers = "".join(f"    - {{name: s{j}, address: 198.18.{j // 250}.{j % 250 + 1}, port: 80}}\n"
                          for j in range(10_000))
        for i in range(8):
            count = (8 << 20) // (len(servers) + 100)
            (root / f"n{i}.yaml").write_text("".join(
                f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: b{i}-{k}}}\nspec:\n  servers:\n"
                + servers for k in range(count)))


CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from controller.loader import TreeError, load_tree
t0 = time.perf_counter()
try:
    tree = load_tree(sys.argv[1])
    outcome = f"valid, {len(tree.items)} objects"
except TreeError as err:
    outcome = f"refused: {err.problems[0]}" if len(err.problems) == 1 else f"refused, {len(err.problems)} problems"
seconds = time.perf_counter() - t0
# VmHWM: this process's own peak (ru_maxrss would also count the parent it was forked from)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mb": hwm / 1024, "outcome": outcome}))
"""


def measure(case: str, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        write_tree(root, case, n)
        size = sum(p.stat().st_size for p in root.iterdir())
        out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(ROOT)], capture_output=True, text=True,
                             timeout=600)
        if out.returncode != 0:
            return {"seconds": 0, "peak_mb": 0, "outcome": f"CRASHED (exit {out.returncode}): {out.stderr[-300:]}",
                    "bytes": size}
        return {**json.loads(out.stdout), "bytes": size}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(f"{'case':<16} {'input':>9} {'load':>8} {'peak RSS':>9}  outcome")
    for case in ("vips", "frontends", "containers", "alias-bomb", "deep", "big-file", "node-limit"):
        r = measure(case, n)
        label = f"{case} {n}" if case in ("vips", "frontends", "containers") else case
        print(f"{label:<16} {r['bytes'] / 1e6:>6.2f} MB {r['seconds']:>7.3f}s {r['peak_mb']:>6.0f} MB  "
              f"{r['outcome'][:110]}", flush=True)


if __name__ == "__main__":
    main()
