#!/usr/bin/env python3
"""Benchmark: DomainJoin against the lab's real Samba AD DC.

In a fresh lab (lb1 + dc1), repeats ROUNDS times: plan on an unjoined node, join
(create), plan in sync (sync is klist and the files; adcli testjoin and getent are
health, asked in a thread beside the plan; --no-health leaves them out), change the groups (files + sssd restart,
no rejoin), leave (prune: delete the computer account, stop sssd, remove files). Prints
the median and the worst of the engine's own time per step (`seconds` of the run record,
which excludes the CLI's Python start-up), the observe time inside it, and the wall time
of the whole `reconcile` process in the node. Usage: bench_domain_join.py [ROUNDS]
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import DOMAIN, JOIN_PASSWORD_FILE, temporary_lab  # noqa: E402

JOIN = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata:
  name: corp
spec:
  nodes: ["*"]
  domain: {domain}
  password: {{file: {secret}}}
  allowGroups: {allow}
  sudoGroups: [Domain Admins]
"""


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    steps: dict[str, list[tuple[float, float, float]]] = {}
    with temporary_lab(nodes=1, domain_controller=True, prefix="djb") as lab:
        tree, empty = lab.shared / "tree", lab.shared / "empty"
        tree.mkdir()
        empty.mkdir()

        def write(allow: str) -> None:
            (tree / "join.yaml").write_text(JOIN.format(domain=DOMAIN, secret=JOIN_PASSWORD_FILE, allow=allow))

        def step(name: str, *args: str, expect: int) -> None:
            started = time.monotonic()
            r = lab.reconcile("lb1", *args, "-o", "json", timeout=300)
            wall = time.monotonic() - started
            if r.returncode != expect:
                raise SystemExit(f"{name}: exit {r.returncode}, wanted {expect}\n{r.stdout}{r.stderr}")
            rec = json.loads(r.stdout)
            steps.setdefault(name, []).append((rec["seconds"], rec["timings"].get("observe.DomainJoin", 0.0), wall))

        for _ in range(rounds):
            write("[app-admins]")
            step("plan, not joined", "--dry-run", "--repo", str(tree), expect=2)
            step("apply: join", "apply", "--repo", str(tree), expect=0)
            step("plan, in sync", "--dry-run", "--repo", str(tree), expect=0)
            step("plan, in sync, --no-health", "--dry-run", "--no-health", "--repo", str(tree), expect=0)
            write("[app-admins, web users]")
            step("apply: groups (restart sssd)", "apply", "--repo", str(tree), expect=0)
            step("apply: leave (prune)", "apply", "--repo", str(empty), expect=0)

    print(f"DomainJoin against a Samba AD DC, {rounds} rounds (engine s = the run's own time; "
          "observe s = inside it; wall s = the whole CLI process in the node)")
    print(f"{'step':32} {'engine s median/max':>20} {'observe s median':>17} {'wall s median':>14}")
    for name, values in steps.items():
        engine = [v[0] for v in values]
        print(f"{name:32} {statistics.median(engine):9.2f} / {max(engine):6.2f} "
              f"{statistics.median(v[1] for v in values):17.2f} {statistics.median(v[2] for v in values):14.2f}")


if __name__ == "__main__":
    main()
