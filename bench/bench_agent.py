#!/usr/bin/env python3
"""Benchmark of `reconcile agent` on real daemons in a lab node (prints numbers).

    .venv/bin/python bench/bench_agent.py [--commits 20] [--drifts 15] [--idle 60]

1. commit-to-converged: the agent in lb1 watches a local repository; each commit changes a
   VirtualIP's priority (keepalived.conf rewritten, validated, keepalived reloaded). Time
   from the start of `git commit` on the host until the agent's status file says that
   revision is applied and the node is in sync.
2. drift repair, VIP address removed by hand (`ip addr del` in lb1): time until the address
   is back, measured inside the node; and who put it back (keepalived by itself, or the
   agent's drift run). Also keepalived killed by hand: time until the agent runs a new one.
3. drift repair, HAProxy server disabled by hand (`set server app/app1 state maint` on the
   admin socket): time until it is ready again, measured inside the node.
4. the idle agent over N seconds: RSS and CPU of the agent process, and of the helper
   processes it keeps (the address monitor, git's cat-file).

Needs root (the lab). Nothing leaves the lab's namespaces; the lab is torn down at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.lab import temporary_lab  # noqa: E402

GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}

CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
"""


def vip(priority: int) -> str:
    return f"""\
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {{name: web-vip}}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  interface: eth0
  keepalived:
    routerId: 51
    priority: {{lb1: {priority}, lb2: 100}}
"""


HAPROXY = """\
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  nodes: [lb1]
  mode: http
  balance: roundrobin
  healthCheck: {type: tcp}
  servers:
    - {name: app1, address: 192.0.2.12, port: 8001}
    - {name: app2, address: 192.0.2.12, port: 8002}
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: web}
spec:
  nodes: [lb1]
  mode: http
  bind:
    - {address: 192.0.2.11, port: 8080}
  defaultBackend: app
"""

# Runs inside lb1: remove the VIP N times, time until it is back (polling `ip -j addr`).
VIP_DRIFT = r"""
import json, subprocess, sys, time
n, state = int(sys.argv[1]), sys.argv[2]
def present():
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    return any(a.get("local") == "192.0.2.100" for i in json.loads(out) for a in i.get("addr_info", []))
def last_run():
    try:
        return json.load(open(state + "/status.json"))
    except (OSError, ValueError):
        return {}
out = []
for _ in range(n):
    deadline = time.monotonic() + 10
    while not present() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    before = last_run().get("started"), len(json.load(open(state + "/history.json")))
    subprocess.run(["ip", "addr", "del", "192.0.2.100/24", "dev", "eth0"], check=True)
    t0 = time.monotonic()
    while not present():
        if time.monotonic() - t0 > 30:
            break
    took = time.monotonic() - t0
    time.sleep(0.5)
    run = last_run()
    out.append({"seconds": took, "agent": run.get("trigger"), "counts": run.get("counts")})
print(json.dumps(out))
"""

# Runs inside lb1: kill keepalived by hand N times, time until a new one runs (the agent's
# VirtualIP watch sees it go within 200 ms and the agent starts it again).
KEEPALIVED_KILLED = r"""
import json, os, signal, sys, time
n = int(sys.argv[1])
def running():
    try:
        pid = int(open("/run/keepalived.pid").read().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None
out = []
for _ in range(n):
    time.sleep(2.0)
    old = running()
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    while running() in (None, old):
        if time.monotonic() - t0 > 30:
            break
        time.sleep(0.002)
    out.append({"seconds": time.monotonic() - t0})
print(json.dumps(out))
"""

# Runs inside lb1: disable app1 by hand N times, time until HAProxy shows it ready again.
HAPROXY_DRIFT = r"""
import json, socket, sys, time
n = int(sys.argv[1])
def cli(cmd):
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/haproxy/admin.sock")
    s.sendall(cmd.encode() + b"\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode()
def admin_state():
    for line in cli("show servers state app").splitlines():
        f = line.split()
        if len(f) > 6 and f[3] == "app1":
            return int(f[6])
    return None
out = []
for _ in range(n):
    deadline = time.monotonic() + 10
    while admin_state() != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    cli("set server app/app1 state maint")
    t0 = time.monotonic()
    while admin_state() != 0:
        if time.monotonic() - t0 > 30:
            break
    out.append({"seconds": time.monotonic() - t0})
print(json.dumps(out))
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def agent_state(state: Path) -> dict:
    try:
        return json.loads((state / "agent.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_applied(state: Path, sha: str, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = agent_state(state)
        if a.get("revision") == sha and a.get("ready"):
            return time.monotonic()
        time.sleep(0.002)
    raise SystemExit(f"revision {sha[:12]} not applied within {timeout}s: {agent_state(state).get('message')}")


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return (f"n={len(ms)} p50={statistics.median(ms):.0f} ms p90={p90:.0f} ms min={ms[0]:.0f} ms "
            f"max={ms[-1]:.0f} ms")


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return cpu, rss


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commits", type=int, default=20)
    p.add_argument("--drifts", type=int, default=15)
    p.add_argument("--idle", type=float, default=60.0)
    p.add_argument("--log", type=Path, default=None, help="copy the agent's log here at the end")
    args = p.parse_args()
    try:
        import reconcilers.haproxy.reconciler  # noqa: F401
        have_haproxy = True
    except ModuleNotFoundError:
        have_haproxy = False

    with temporary_lab(nodes=2, prefix="ba") as lab:
        work, state = lab.shared / "ops", lab.shared / "state-lb1"
        work.mkdir()
        git(work, "init", "-q", "-b", "main")
        (work / "cluster.yaml").write_text(CLUSTER)
        (work / "vip.yaml").write_text(vip(150))
        if have_haproxy:
            (work / "haproxy.yaml").write_text(HAPROXY)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "start")
        first = git(work, "rev-parse", "HEAD")
        log = open(lab.shared / "agent.log", "w")
        agent = lab.popen("lb1", ["reconcile", "agent", "--repo", str(work), "--state-dir", str(state)],
                          stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_applied(state, first, 60)
            (agent_pid,) = children(agent.pid)
            print(f"agent pid {agent_pid} (host), following a local repository; HAProxy reconcilers: "
                  f"{'yes' if have_haproxy else 'NOT INSTALLED'}")

            # 1. commit to converged
            latencies, runs = [], []
            for i in range(args.commits):
                (work / "vip.yaml").write_text(vip(151 + i % 2))
                t0 = time.monotonic()
                git(work, "commit", "-q", "-a", "-m", f"priority {151 + i % 2}")
                sha = git(work, "rev-parse", "HEAD")
                latencies.append(wait_applied(state, sha) - t0)
                runs.append(json.loads((state / "status.json").read_text())["seconds"])
                time.sleep(0.3)
            print(f"commit-to-converged (VIP priority: file, keepalived -t, reload): {summary(latencies)}")
            print(f"  of which the agent's run (observe, validate, apply, observe): {summary(runs)}")

            # 2. VIP address removed by hand
            r = lab.exec("lb1", ["/usr/bin/python3", "-c", VIP_DRIFT, str(args.drifts), str(state)], timeout=600)
            vip_drift = json.loads(r.stdout)
            by_agent = sum(1 for d in vip_drift if (d["counts"] or {}).get("drift-corrected"))
            print(f"drift repair, VIP address removed: {summary([d['seconds'] for d in vip_drift])} "
                  f"({by_agent} of {len(vip_drift)} repaired by the agent's run, the rest by keepalived itself "
                  "before the agent's run found it in sync)")

            r = lab.exec("lb1", ["/usr/bin/python3", "-c", KEEPALIVED_KILLED, str(min(args.drifts, 5))], timeout=600)
            print(f"drift repair, keepalived killed (kill -9) until a new one runs: "
                  f"{summary([d['seconds'] for d in json.loads(r.stdout)])} (repaired by the agent's run)")

            # 3. HAProxy server disabled by hand
            if have_haproxy:
                r = lab.exec("lb1", ["/usr/bin/python3", "-c", HAPROXY_DRIFT, str(args.drifts)], timeout=600)
                print(f"drift repair, HAProxy server set to maint by hand: "
                      f"{summary([d['seconds'] for d in json.loads(r.stdout)])}")
            else:
                print("drift repair, HAProxy server: PENDING (the Backend/Frontend reconcilers are not installed)")

            # 4. idle
            time.sleep(3)
            helpers = children(agent_pid)
            cpu0, _ = proc_usage(agent_pid)
            helper0 = {c: proc_usage(c)[0] for c in helpers}
            t0 = time.monotonic()
            rss_max = 0
            while time.monotonic() - t0 < args.idle:
                rss_max = max(rss_max, proc_usage(agent_pid)[1])
                time.sleep(1)
            elapsed = time.monotonic() - t0
            cpu1, rss = proc_usage(agent_pid)
            helper_cpu = sum(proc_usage(c)[0] - helper0[c] for c in helpers if Path(f"/proc/{c}").exists())
            helper_rss = sum(proc_usage(c)[1] for c in helpers if Path(f"/proc/{c}").exists())
            names = sorted(Path(f"/proc/{c}/comm").read_text().strip() for c in helpers if Path(f"/proc/{c}").exists())
            print(f"idle agent over {elapsed:.0f}s: RSS {rss / 2**20:.1f} MB (max {rss_max / 2**20:.1f} MB), "
                  f"CPU {100 * (cpu1 - cpu0) / elapsed:.2f} % of one core")
            print(f"  helpers {', '.join(names) or 'none'}: RSS {helper_rss / 2**20:.1f} MB, "
                  f"CPU {100 * helper_cpu / elapsed:.2f} %")
        finally:
            state_json = agent_state(state)
            lab.exec("lb1", ["kill", "-TERM", str(state_json.get("pid", ""))], check=False)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
            log.close()
            if args.log:
                args.log.write_text((lab.shared / "agent.log").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
