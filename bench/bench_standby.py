#!/usr/bin/env python3
"""Benchmark: the Pacemaker part of a rollout's drain (transient standby), on a real
two-node Corosync/Pacemaker cluster in a lab (configured by `reconcile apply` in the nodes).

Timed inside lb2, ROUNDS times each, `standby(on)` then `standby(off)` of
reconcilers/pacemaker/rollout.py:

- empty: lb2 runs no resource: the fast path (standby in the CIB, DC idle, nothing active
  here) — and, for comparison, what the drain did before: `crm_attribute` then
  `crm_resource --wait`;
- empty, beside a turn holder's heartbeat: lb1 writes a transient attribute every second
  (each write makes the DC run a transition), as an agent in its turn does;
- with a resource: an ocf:pacemaker:Dummy runs on lb2 (its start and stop sleep 1 s): the
  standby waits until Pacemaker moved it to lb1.

Usage: bench_standby.py [ROUNDS]   (default 5)
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import COROSYNC_AUTHKEY_FILE, temporary_lab  # noqa: E402

CLUSTER = f"""\
apiVersion: reconcile/v1
kind: Cluster
metadata: {{name: web}}
spec:
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24}}
  authkey: {{file: {COROSYNC_AUTHKEY_FILE}}}
  quorum: {{twoNode: true, waitForAll: true}}
  stonithEnabled: false
  properties: {{no-quorum-policy: stop, dc-deadtime: 5s}}
"""

# Runs in lb2: times standby on/off ROUNDS times; argv: rounds, mode (fast | old).
TIMER = r"""
import json, subprocess, sys, time
from reconcilers.base import Node, Runner
from reconcilers.pacemaker.rollout import standby
rounds, mode = int(sys.argv[1]), sys.argv[2]
node = Node("lb2", Runner(), "/tmp/bench-standby")
on, off, said = [], [], set()
for _ in range(rounds):
    t = time.monotonic()
    if mode == "old":
        subprocess.run(["crm_attribute", "--node", "lb2", "--name", "standby", "--lifetime", "reboot", "--update",
                        "on"], check=True)
        subprocess.run(["crm_resource", "--wait", "--timeout=60s"], check=False)
    else:
        said.add(standby(node, True))
    on.append(time.monotonic() - t)
    t = time.monotonic()
    standby(node, False)
    subprocess.run(["crm_resource", "--wait", "--timeout=60s"], check=False)  # settled before the next round
    off.append(time.monotonic() - t)
print(json.dumps({"on": on, "off": off, "said": sorted(s for s in said if s)}))
"""

DUMMY = ('<primitive id="bench-dummy" class="ocf" provider="pacemaker" type="Dummy">'
         '<instance_attributes id="bench-dummy-ia"><nvpair id="bench-dummy-sleep" name="op_sleep" value="1"/>'
         '</instance_attributes></primitive>')
PREFER_LB2 = '<rsc_location id="bench-dummy-on-lb2" rsc="bench-dummy" node="lb2" score="100"/>'


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.3f}s  min {min(values):.3f}s  max {max(values):.3f}s"


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with temporary_lab(nodes=2, prefix="bsb") as lab:
        repo = lab.shared / "repo"
        repo.mkdir()
        (repo / "cluster.yaml").write_text(CLUSTER)
        procs = [lab.popen(n, ["reconcile", "apply", "--repo", str(repo)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) for n in ("lb1", "lb2")]
        for p in procs:
            p.wait(180)
        script = lab.shared / "timer.py"
        script.write_text(TIMER)

        def timed(mode: str) -> dict:
            r = lab.exec("lb2", ["python3", str(script), str(rounds), mode], timeout=600)
            return json.loads(r.stdout.strip().splitlines()[-1])

        results = {}
        results["empty, fast path"] = timed("fast")
        results["empty, before (crm_resource --wait)"] = timed("old")
        beat = lab.popen("lb1", ["bash", "-c", "while true; do attrd_updater -n reconcile-heartbeat -U $(date +%s.%N);"
                                               " sleep 1; done"], stdout=subprocess.DEVNULL)
        try:
            results["empty, beside a heartbeat every 1 s"] = timed("fast")
        finally:
            beat.terminate()
            beat.wait(10)
        lab.exec("lb1", ["cibadmin", "--create", "--scope", "resources", "--xml-text", DUMMY])
        lab.exec("lb1", ["cibadmin", "--create", "--scope", "constraints", "--xml-text", PREFER_LB2])
        lab.exec("lb1", ["crm_resource", "--wait", "--timeout=60s"], check=False)
        results["a resource on lb2 (moved to lb1)"] = timed("fast")
        print(f"standby of lb2, {rounds} rounds each (on = until Pacemaker is done with it; off then waits "
              "for the cluster to settle)")
        for name, r in results.items():
            print(f"  {name:42} on: {summary(r['on'])}   {'; '.join(r['said'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
