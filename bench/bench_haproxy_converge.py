#!/usr/bin/env python3
"""Benchmark: converge many Backends and Frontends on one lab node, from empty and by revision.

For each N (default 10, 100, 1000): a tree of N Backends (5 servers each, TCP checks) and
N/10 Frontends (each binding its own port on 127.0.0.1, a default backend and routing
/a.../i to nine more), applied with `reconcile apply` (the CLI, inside the node, as an
operator would) on a node without HAProxy. Then:

  converge       wall time of `reconcile apply` from empty (HAProxy started)
  reloads        HAProxy reloads for that revision after the start (master `show proc`)
  again          `reconcile apply` on the converged node (nothing to do)
  dry-run        `reconcile --dry-run` on the converged node
  +20 %          a revision adding N/5 Backends and N/50 Frontends: wall time, reloads
  weights        a revision changing the weight of one server in every Backend: wall time, reloads

Prints a table; asserts nothing.

    .venv/bin/python bench/bench_haproxy_converge.py [N ...]
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import Lab, temporary_lab  # noqa: E402

NODE = "lb1"
CLI = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n"); out = b""
try:
    while chunk := s.recv(65536): out += chunk
except (ConnectionResetError, TimeoutError): pass
print(out.decode(), end="")
"""


def backend(i: int, weight: int = 1) -> str:
    servers = "\n".join(f"    - {{name: s{j}, address: 127.0.{(i // 250) % 250}.{i % 250 + 1}, port: {20000 + j}, "
                        f"weight: {weight if j == 0 else 1}}}" for j in range(5))
    return (f"apiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: be-{i}}}\nspec:\n  node: lb1\n"
            f"  healthCheck: {{type: tcp, interval: 5s}}\n  servers:\n{servers}\n")


def frontend(f: int) -> str:
    rules = "\n".join(f"    - {{path: /{chr(97 + k)}, backend: be-{f * 10 + k + 1}}}" for k in range(9))
    return (f"apiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: fe-{f}}}\nspec:\n  node: lb1\n"
            f"  bind: [{{address: 127.0.0.1, port: {30000 + f}}}]\n  defaultBackend: be-{f * 10}\n  rules:\n{rules}\n")


def write_tree(path: Path, backends: int, weight: int = 1) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.yaml"):
        old.unlink()
    for start in range(0, backends, 100):
        docs = [backend(i, weight) for i in range(start, min(backends, start + 100))]
        (path / f"backends-{start}.yaml").write_text("---\n".join(docs))
    docs = [frontend(f) for f in range(backends // 10)]
    if docs:
        (path / "frontends.yaml").write_text("---\n".join(docs))
    return path


def reloads(lab: Lab) -> int:
    out = lab.exec(NODE, ["/usr/bin/python3", "-c", CLI, "/run/haproxy-master.sock", "show proc; quit"]).stdout
    return int(re.search(r"master\s+(\d+)", out).group(1))


def timed(lab: Lab, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = lab.exec(NODE, ["reconcile", *args], check=False, timeout=3600)
    return time.monotonic() - started, result


def reset(lab: Lab) -> None:
    pid = lab.exec(NODE, ["cat", "/run/haproxy.pid"], check=False).stdout.strip()
    if pid.isdigit():
        lab.exec(NODE, ["kill", pid], check=False)
        lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"], timeout=60)
    lab.exec(NODE, ["rm", "-rf", "/etc/haproxy/haproxy.cfg", "/var/lib/haproxy/server-state", "/var/lib/reconcile",
                    "/run/haproxy.pid"], check=False)


def measure(lab: Lab, n: int) -> dict[str, str]:
    reset(lab)
    tree = write_tree(lab.shared / f"tree-{n}", n)
    seconds, result = timed(lab, "apply", "--repo", str(tree))
    if result.returncode != 0:
        raise SystemExit(f"apply of {n} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    row = {"N": f"{n} + {n // 10}", "converge": f"{seconds:.2f}s", "reloads": str(reloads(lab))}
    seconds, result = timed(lab, "apply", "--repo", str(tree))
    row["again"] = f"{seconds:.2f}s rc={result.returncode}"
    seconds, result = timed(lab, "--dry-run", "--repo", str(tree))
    row["dry-run"] = f"{seconds:.2f}s rc={result.returncode}"
    before = reloads(lab)
    bigger = write_tree(lab.shared / f"tree-{n}-more", n + n // 5)
    seconds, result = timed(lab, "apply", "--repo", str(bigger))
    row["+20 %"] = f"{seconds:.2f}s, {reloads(lab) - before} reload(s), rc={result.returncode}"
    before = reloads(lab)
    weights = write_tree(lab.shared / f"tree-{n}-weights", n + n // 5, weight=3)
    seconds, result = timed(lab, "apply", "--repo", str(weights))
    row["weights"] = f"{seconds:.2f}s, {reloads(lab) - before} reload(s), rc={result.returncode}"
    return row


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 1000]
    with temporary_lab(nodes=1, prefix="bc") as lab:
        rows = [measure(lab, n) for n in sizes]
        reset(lab)
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in columns))


if __name__ == "__main__":
    main()
