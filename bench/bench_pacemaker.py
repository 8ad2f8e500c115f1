#!/usr/bin/env python3
"""Benchmark of Cluster + ClusterResource on real Corosync 3 + Pacemaker 2.1 (prints numbers).

    .venv/bin/python bench/bench_pacemaker.py [--failovers 6] [--no-crypto]

On a fresh two-node lab, with the example manifests of desired-state/ (Cluster `web` with
its generated defaults: token 1000 ms, two_node, dc-deadtime 5s; VirtualIP `db-vip` managed
by Pacemaker; ClusterResource `db` colocated with it and started after it):

1. formation: `reconcile apply` started on both empty nodes at once; time until both
   applies returned, and until crm_mon shows a quorate cluster with db-vip and db started
   (and the VIP's address on the node that runs it).
2. failover when the node running the VIP dies (its eth0 goes down): time from the link
   going down to the address appearing on the survivor, timestamped inside the survivor by
   `ip -ts monitor address`. Then the link comes back, the cluster rejoins and settles, and
   the next round starts from wherever Pacemaker left the VIP.
3. switchover: Pacemaker stopped cleanly on the node running the VIP (`pacemakerd
   --shutdown`), until the address is on the other node; then `reconcile apply` on the
   stopped node starts Pacemaker again (timed too).
4. the agent's cost on a converged cluster: `reconcile apply` with nothing to do and a
   `reconcile --dry-run` with a pending change (crm_simulate preview), wall time.

Needs root (the lab). Nothing leaves the lab's namespaces; the lab is torn down at the end.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.lab import Lab, temporary_lab  # noqa: E402

NODES = ("lb1", "lb2")
VIP = "192.0.2.110"


def example_repo(lab: Lab, crypto: bool = True) -> Path:
    """desired-state's cluster.yaml and cluster-resources.yaml, and its db-vip document
    (with crypto: none instead of its authkey when `crypto` is false)."""
    repo = lab.shared / "repo"
    repo.mkdir()
    for name in ("cluster.yaml", "cluster-resources.yaml"):
        text = (ROOT / "desired-state" / name).read_text()
        if not crypto:
            text = "\n".join("  crypto: none" if ln.startswith("  authkey:") else ln for ln in text.splitlines())
        (repo / name).write_text(text + "\n")
    docs = (ROOT / "desired-state" / "virtual-ips.yaml").read_text().split("\n---\n")
    (repo / "vip.yaml").write_text(next(d for d in docs if "name: db-vip" in d) + "\n")
    return repo


def crm_mon(lab: Lab, node: str) -> ET.Element | None:
    r = lab.exec(node, ["crm_mon", "-1", "--output-as=xml"], check=False)
    try:
        return ET.fromstring(r.stdout) if r.returncode == 0 else None
    except ET.ParseError:
        return None


def started_on(mon: ET.Element, resource: str) -> list[str]:
    for r in mon.iter("resource"):
        if r.get("id") == resource and r.get("active") == "true" and r.get("role") == "Started":
            return [n.get("name") for n in r.findall("node")]
    return []


def has_vip(lab: Lab, node: str) -> bool:
    out = lab.exec(node, ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout
    return any(a.get("local") == VIP for i in json.loads(out) for a in i.get("addr_info", []))


def holder(lab: Lab) -> str:
    mon = crm_mon(lab, "lb1") or crm_mon(lab, "lb2")
    [node] = started_on(mon, "db-vip")
    return node


def other(node: str) -> str:
    return "lb2" if node == "lb1" else "lb1"


def wait(cond, timeout: float, step: float = 0.05) -> float:
    started = time.monotonic()
    while not cond():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


def settle(lab: Lab) -> None:
    def whole() -> bool:
        mon = crm_mon(lab, "lb1")
        if mon is None:
            return False
        online = [n.get("name") for n in mon.iter("node") if n.get("online") == "true" and n.get("resources_running")]
        dc = mon.find("summary/current_dc")
        return sorted(set(online)) == list(NODES) and dc is not None and dc.get("present") == "true" \
            and started_on(mon, "db-vip") != [] and started_on(mon, "db") == started_on(mon, "db-vip")
    wait(whole, 120, step=0.3)
    lab.exec("lb1", ["crm_resource", "--wait", "--timeout=60s"], timeout=90)


def vip_appears(lab: Lab, node: str, action) -> float:
    """Seconds from `action()` to the VIP's address appearing on `node`, timestamped in the node."""
    monitor = lab.popen(node, ["ip", "-ts", "-o", "monitor", "address"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # the monitor is listening
        t0 = time.time()
        action()
        deadline = time.monotonic() + 60
        assert monitor.stdout is not None
        for line in monitor.stdout:
            if f"inet {VIP}/" in line and "Deleted" not in line:
                stamp = re.match(r"\[([0-9T:.-]+)\]", line).group(1)
                return datetime.fromisoformat(stamp).timestamp() - t0
            if time.monotonic() > deadline:
                break
        raise SystemExit(f"{VIP} never appeared on {node}")
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)


def timed(lab: Lab, node: str, *argv: str) -> tuple[float, int]:
    started = time.monotonic()
    r = lab.exec(node, list(argv), check=False, timeout=300)
    return time.monotonic() - started, r.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failovers", type=int, default=6)
    parser.add_argument("--no-crypto", action="store_true", help="the example cluster with crypto: none")
    args = parser.parse_args()
    with temporary_lab(nodes=2, prefix="pmb") as lab:
        repo = example_repo(lab, crypto=not args.no_crypto)

        # 1. formation
        started = time.monotonic()
        procs = {n: lab.popen(n, ["reconcile", "apply", "--repo", str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in NODES}
        applied = {}
        for n, p in procs.items():
            out, err = p.communicate(timeout=300)
            applied[n] = time.monotonic() - started
            if p.returncode != 0:
                raise SystemExit(f"{n}: apply exited {p.returncode}\n{out}\n{err}")

        def running() -> bool:
            mon = crm_mon(lab, "lb1")
            if mon is None:
                return False
            dc = mon.find("summary/current_dc")
            where = started_on(mon, "db-vip")
            return dc is not None and dc.get("with_quorum") == "true" and where != [] \
                and started_on(mon, "db") == where and has_vip(lab, where[0])
        wait(running, 120)
        formed = time.monotonic() - started
        print("formation from empty nodes (both applies started at once)")
        print(f"  apply returned: lb1 {applied['lb1']:.1f}s, lb2 {applied['lb2']:.1f}s")
        print(f"  quorate cluster with db-vip and db started: {formed:.1f}s")

        # 2. failover: the node running the VIP loses its network
        settle(lab)
        times = []
        for i in range(args.failovers):
            dead = holder(lab)
            survivor = other(dead)
            mon = crm_mon(lab, survivor)
            dc_el = mon.find("summary/current_dc") if mon is not None else None
            was_dc = dc_el is not None and dc_el.get("name") == dead
            seconds = vip_appears(lab, survivor, lambda: lab.exec(dead, ["ip", "link", "set", "eth0", "down"]))
            times.append(seconds)
            r1, _ = timed(lab, survivor, "reconcile", "apply", "--repo", str(repo))
            lab.exec(dead, ["ip", "link", "set", "eth0", "up"])
            print(f"  failover {i + 1}: {dead} down ({'the DC' if was_dc else 'not the DC'}), {VIP} on {survivor} "
                  f"after {seconds:.2f}s")
            settle(lab)
        print(f"failover (eth0 down on the VIP's node, no fencing): median {statistics.median(times):.2f}s, "
              f"worst {max(times):.2f}s over {len(times)}")

        # 3. switchover: Pacemaker stopped cleanly where the VIP runs
        node = holder(lab)
        seconds = vip_appears(lab, other(node), lambda: lab.exec(node, ["pacemakerd", "--shutdown"], timeout=120))
        print(f"switchover (pacemakerd --shutdown on {node}): {VIP} on {other(node)} {seconds:.2f}s after the "
              "stop began")
        back, rc = timed(lab, node, "reconcile", "apply", "--repo", str(repo))
        print(f"  `reconcile apply` on {node} started Pacemaker again and converged in {back:.1f}s (exit {rc})")
        settle(lab)

        # 4. the agent on a converged cluster
        noop = [timed(lab, n, "reconcile", "apply", "--repo", str(repo)) for n in NODES for _ in range(3)]
        assert all(rc == 0 for _, rc in noop), noop
        (repo / "cluster-resources.yaml").write_text(
            (repo / "cluster-resources.yaml").read_text().replace("  agent: ocf:heartbeat:Dummy\n",
                                                                   "  agent: ocf:heartbeat:Dummy\n  params: {fake: b}\n"))
        plan = [timed(lab, holder(lab), "reconcile", "--dry-run", "--repo", str(repo)) for _ in range(3)]
        assert all(rc == 2 for _, rc in plan), plan
        print(f"`reconcile apply` with nothing to do: median {statistics.median(t for t, _ in noop):.2f}s "
              f"(whole process, {len(noop)} runs)")
        print(f"`reconcile --dry-run` with a change and its crm_simulate preview: median "
              f"{statistics.median(t for t, _ in plan):.2f}s")


if __name__ == "__main__":
    main()
