#!/usr/bin/env python3
"""Benchmark: keepalived failover and the split-brain guard, on real keepalived in a lab.

In a fresh two-node lab (lb1 priority 150, lb2 priority 100, configured by `reconcile
apply` inside the nodes), for the advert interval the manifest produces by default and
for 0.1 s, ROUNDS times each:

- kill -9 of the keepalived parent alone (its VRRP child then exits cleanly and sends a
  priority-0 advert), and of every keepalived process at once (nothing is sent: the backup
  waits for the master-down timer; the address stays behind on lb1);
- kill -STOP of the VRRP process (a hung master; the address stays on lb1 too);

measured from the signal (sent from this process, by host PID, so no `nsenter` start-up is
counted) to the address appearing on lb2, which a poller inside lb2 sees with
`ip -o -4 addr` every 10 ms. Then the split-brain guard with the real agent
(`reconcile agent` in lb1, driven by KeepalivedReconciler.watch): time from keepalived's
death to the stale copy gone from lb1. Finally flapping: VRRP master transitions counted
over FLAP_SECONDS with the CPUs idle, with two busy loops saturating both cores and with
eight (4x oversubscribed); and the longest stall of the master (its VRRP process frozen)
that does not make the backup take over.

Then drain (reconcile's track file written, no reload): time from the write to the address
on lb2, with the default VRRPv3 advert and with VRRPv2's 1 s advert (where a failover by
priority alone would take a 3.6 s master-down interval); and an IPv6 VIP (VRRPv3 over
multicast): kill -STOP of the master's VRRP process and a clean stop.

Usage: bench_keepalived.py [ROUNDS] [FLAP_SECONDS] [--only drain]   (defaults 5 and 30)
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import Lab, temporary_lab  # noqa: E402
from schemas.virtual_ip import DEFAULT_ADVERT_INTERVAL  # noqa: E402

VIP = "192.0.2.100"
CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
"""
VIP_YAML = """\
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: web-vip
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  keepalived:
    routerId: 51
    priority: {{lb1: 150, lb2: 100}}
{extra}"""

# Inside a node: print "ready", then the monotonic time at which VIP is (or is no longer)
# on eth0. CLOCK_MONOTONIC is the same in every PID namespace (the lab has no time namespace).
POLLER = """\
import subprocess, sys, time
ip, want = sys.argv[1], sys.argv[2] == "present"
print("ready", flush=True)
while True:
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    if (f" {ip}/" in out) == want:
        print(time.monotonic(), flush=True)
        break
    time.sleep(0.01)
"""
# Inside a node: print "ready", wait for a line on stdin, then write the drain file and print
# the monotonic time of the write.
DRAINER = """\
import sys, time
print("ready", flush=True)
sys.stdin.readline()
with open("/var/lib/reconcile/keepalived/drain", "w") as f:
    f.write(sys.argv[1] + "\\n")
print(time.monotonic(), flush=True)
"""


def host_pids(lab: Lab, node: str, node_pids: list[int]) -> list[int]:
    """Host PIDs of processes of `node` known there by `node_pids`."""
    ns = os.readlink(f"/proc/{lab.pid(node)}/ns/pid")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") != ns:
                continue
            nspid = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        inner = int(nspid.split()[-1])
        if inner in node_pids:
            found[inner] = int(entry.name)
    return [found[p] for p in node_pids]


def keepalived_pids(lab: Lab, node: str) -> tuple[int, int]:
    parent, child = lab.exec(node, ["cat", "/run/keepalived.pid", "/run/keepalived_vrrp.pid"]).stdout.split()
    p, c = host_pids(lab, node, [int(parent), int(child)])
    return p, c


def on(lab: Lab, node: str) -> bool:
    return f" {VIP}/" in lab.exec(node, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout


def wait(cond, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def apply(lab: Lab, node: str, repo: Path) -> None:
    r = lab.reconcile(node, "apply", "--repo", str(repo))
    if r.returncode != 0:
        raise SystemExit(f"{node}: apply exited {r.returncode}\n{r.stdout}{r.stderr}")


def settle_on_lb1(lab: Lab, repo: Path) -> None:
    apply(lab, "lb1", repo)
    wait(lambda: on(lab, "lb1") and not on(lab, "lb2"), what="the VIP on lb1 only")
    time.sleep(0.5)


def poller(lab: Lab, node: str, want: str, ip: str = VIP) -> subprocess.Popen:
    p = lab.popen(node, ["python3", "-c", POLLER, ip, want], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def timed(lab: Lab, act, node: str = "lb2", want: str = "present") -> float:
    p = poller(lab, node, want)
    try:
        time.sleep(0.05)
        t0 = time.monotonic()
        act()
        line = p.stdout.readline().strip()
        if not line:
            raise SystemExit(f"the poller on {node} ended without seeing the VIP {want}")
        return float(line) - t0
    finally:
        p.kill()
        p.wait()


def failovers(lab: Lab, repo: Path, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"kill -9 parent": [], "kill -9 all": [], "kill -STOP vrrp": []}
    for _ in range(rounds):
        settle_on_lb1(lab, repo)
        parent, _child = keepalived_pids(lab, "lb1")
        out["kill -9 parent"].append(timed(lab, lambda: os.kill(parent, signal.SIGKILL)))

        settle_on_lb1(lab, repo)
        parent, child = keepalived_pids(lab, "lb1")

        def kill_all() -> None:
            # STOP first, so that the child cannot act on its parent-death SIGTERM in between
            os.kill(parent, signal.SIGSTOP)
            os.kill(child, signal.SIGSTOP)
            os.kill(child, signal.SIGKILL)
            os.kill(parent, signal.SIGKILL)

        out["kill -9 all"].append(timed(lab, kill_all))

        settle_on_lb1(lab, repo)  # the guard removes the stale copy, keepalived starts again
        parent, child = keepalived_pids(lab, "lb1")
        out["kill -STOP vrrp"].append(timed(lab, lambda: os.kill(child, signal.SIGSTOP)))
        os.kill(child, signal.SIGCONT)
    settle_on_lb1(lab, repo)
    return out


def stale_removal(lab: Lab, repo: Path, rounds: int) -> dict[str, list[float]]:
    """The real agent in lb1 removes the stale copy after keepalived dies."""
    git = lab.shared / "agent-repo"
    git.mkdir()
    for name in ("cluster.yaml", "vip.yaml"):
        (git / name).write_text((repo / name).read_text())
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=bench", "-c", "user.email=bench@lab", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(git), *argv], check=True)
    agent = lab.popen("lb1", ["reconcile", "agent", "--repo", str(git), "--node", "lb1"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict[str, list[float]] = {"takeover by lb2": [], "stale copy gone from lb1": []}
    try:
        for _ in range(rounds):
            wait(lambda: on(lab, "lb1") and not on(lab, "lb2"), what="the agent to converge lb1")
            time.sleep(1.0)
            parent, child = keepalived_pids(lab, "lb1")
            backup = poller(lab, "lb2", "present")
            gone = poller(lab, "lb1", "absent")
            t0 = time.monotonic()
            for pid, sig in ((parent, signal.SIGSTOP), (child, signal.SIGSTOP), (child, signal.SIGKILL),
                             (parent, signal.SIGKILL)):
                os.kill(pid, sig)
            for label, p in (("takeover by lb2", backup), ("stale copy gone from lb1", gone)):
                line = p.stdout.readline().strip()
                p.kill()
                p.wait()
                out[label].append(float(line) - t0)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    return out


def transitions(lab: Lab, nodes: tuple[str, ...] = ("lb1", "lb2")) -> int:
    total = 0
    for node in nodes:
        text = lab.exec(node, ["sh", "-c", "kill -s $(keepalived --signum=JSON) $(cat /run/keepalived.pid); "
                               "sleep 0.3; cat /tmp/keepalived.json"]).stdout
        total += sum(i["stats"]["become_master"] for i in json.loads(text))
    return total


def flapping(lab: Lab, seconds: float, busy: int) -> int:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        before = transitions(lab)
        time.sleep(seconds)
        return transitions(lab) - before
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def stall_tolerance(lab: Lab, repo: Path, pauses: tuple[float, ...]) -> list[tuple[float, bool]]:
    """Freeze lb1's VRRP process for each pause (a stalled master: a busy or swapping
    host, a VM paused by its hypervisor) and tell whether lb2 took the address meanwhile."""
    out = []
    for pause in pauses:
        settle_on_lb1(lab, repo)
        _parent, child = keepalived_pids(lab, "lb1")
        before = transitions(lab, ("lb2",))
        os.kill(child, signal.SIGSTOP)
        time.sleep(pause)
        os.kill(child, signal.SIGCONT)
        time.sleep(0.5)
        out.append((pause, transitions(lab, ("lb2",)) > before))
    settle_on_lb1(lab, repo)
    return out


def drains(lab: Lab, repo: Path, rounds: int) -> list[float]:
    """Seconds from the drain file's write on lb1 to the address on lb2."""
    out = []
    for _ in range(rounds):
        settle_on_lb1(lab, repo)
        watch = poller(lab, "lb2", "present")
        writer = lab.popen("lb1", ["python3", "-c", DRAINER, "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
        assert writer.stdout.readline().strip() == "ready"
        writer.stdin.write("go\n")
        writer.stdin.flush()
        written = float(writer.stdout.readline())
        out.append(float(watch.stdout.readline()) - written)
        for p in (watch, writer):
            p.kill()
            p.wait()
        lab.exec("lb1", ["reconcile", "undrain"])
    settle_on_lb1(lab, repo)
    return out


IPV6 = "2001:db8::100"


def ipv6_failovers(lab: Lab, repo: Path, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"IPv6 kill -STOP vrrp": [], "IPv6 clean stop": []}

    def settle() -> None:
        apply(lab, "lb1", repo)
        wait(lambda: f" {IPV6}/" in lab.exec("lb1", ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout,
             what="the IPv6 VIP on lb1")
        time.sleep(0.5)

    for _ in range(rounds):
        settle()
        _parent, child = keepalived_pids(lab, "lb1")
        p = poller(lab, "lb2", "present", IPV6)
        t0 = time.monotonic()
        os.kill(child, signal.SIGSTOP)
        out["IPv6 kill -STOP vrrp"].append(float(p.stdout.readline()) - t0)
        p.kill()
        p.wait()
        os.kill(child, signal.SIGCONT)
        settle()
        parent, _child = keepalived_pids(lab, "lb1")
        p = poller(lab, "lb2", "present", IPV6)
        t0 = time.monotonic()
        os.kill(parent, signal.SIGTERM)
        out["IPv6 clean stop"].append(float(p.stdout.readline()) - t0)
        p.kill()
        p.wait()
    settle()
    return out


def drain_and_ipv6(lab: Lab, rounds: int) -> None:
    for label, extra in (("VRRPv3, advert 0.25 s (default)", ""), ("VRRPv2, advert 1 s", "    version: 2\n")):
        repo = lab.shared / f"repo-drain-{len(extra)}"
        repo.mkdir(exist_ok=True)
        (repo / "cluster.yaml").write_text(CLUSTER)
        (repo / "vip.yaml").write_text(VIP_YAML.format(extra=extra))
        for node in ("lb2", "lb1"):
            apply(lab, node, repo)
        print(f"\ndrain, {label}: from the write of the drain file on lb1 to the address on lb2 (no reload)")
        print(show("drain", drains(lab, repo, rounds)))
    repo = lab.shared / "repo-ipv6"
    repo.mkdir(exist_ok=True)
    (repo / "cluster.yaml").write_text(CLUSTER)
    (repo / "vip.yaml").write_text(VIP_YAML.replace("address: 192.0.2.100/24", f"address: {IPV6}/64").format(extra=""))
    for node in ("lb2", "lb1"):
        apply(lab, node, repo)
    print("\nIPv6 VIP (VRRPv3 multicast, advert 0.25 s)")
    for label, values in ipv6_failovers(lab, repo, rounds).items():
        print(show(label, values))


def show(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"  {label:<28} p50 {statistics.median(ms):7.0f} ms   max {max(ms):7.0f} ms   (n={len(ms)})"


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only_drain = "--only" in sys.argv and "drain" in sys.argv
    args = [a for a in args if a != "drain"]
    rounds = int(args[0]) if args else 5
    flap_seconds = float(args[1]) if len(args) > 1 else 30.0
    print(f"keepalived failover, 2 lab nodes, {os.cpu_count()} CPUs, {rounds} rounds")
    with temporary_lab(nodes=2, prefix="kab") as lab:
        drain_and_ipv6(lab, rounds)
        if only_drain:
            return
        for advert in (DEFAULT_ADVERT_INTERVAL, 0.1):
            repo = lab.shared / f"repo-{advert}"
            repo.mkdir()
            (repo / "cluster.yaml").write_text(CLUSTER)
            extra = "" if advert == DEFAULT_ADVERT_INTERVAL else f"    advertInterval: {advert}\n"
            (repo / "vip.yaml").write_text(VIP_YAML.format(extra=extra))
            for node in ("lb2", "lb1"):
                apply(lab, node, repo)
            settle_on_lb1(lab, repo)
            theory = 3 * advert + (256 - 100) / 256 * advert
            default = " (the manifest's default)" if not extra else ""
            print(f"\nadvert_int {advert} s{default}: master-down timer of lb2 = {theory * 1000:.0f} ms")
            for label, values in failovers(lab, repo, rounds).items():
                print(show(label, values))
            for busy in (0, 2, 8):
                n = flapping(lab, flap_seconds, busy)
                print(f"  master transitions in {flap_seconds:.0f} s with {busy} busy loops: {n}")
            stalls = stall_tolerance(lab, repo, (0.2, 0.3, 0.5, 0.7, 0.9, 1.1))
            print("  lb1's VRRP process frozen for: " + ", ".join(
                f"{p * 1000:.0f} ms {'→ failover' if moved else 'ok'}" for p, moved in stalls))
            if advert == DEFAULT_ADVERT_INTERVAL:
                print("  split-brain guard with `reconcile agent` on lb1 (kill -9 of every keepalived process):")
                guard = stale_removal(lab, repo, rounds)
                for label, values in guard.items():
                    print("  " + show(label, values))
                after = [(g - t) * 1000 for t, g in zip(guard["takeover by lb2"], guard["stale copy gone from lb1"])]
                print(f"    copy gone after the takeover by  min {min(after):+5.0f} ms   max {max(after):+5.0f} ms"
                      "   (negative: a gap with the address nowhere)")


if __name__ == "__main__":
    main()
