#!/usr/bin/env python3
"""Benchmark: reconcile side by side with ansible-core and pyinfra, on one lab node.

The peers do the part of reconcile's work that maps directly onto them: render haproxy.cfg,
keepalived.conf and corosync.conf from the same data, install a file only once its daemon's
checker accepted it, start Corosync and Pacemaker (and set the cluster properties),
keepalived and HAProxy (master-worker, as the Debian unit runs it), reload a daemon when
its file changed. Containers are not part of it (LXC has no module in ansible-core nor an
operation in pyinfra). ansible-core and pyinfra come from PyPI into a virtual environment
of their own (`.venv-bench`, the `bench` extra of pyproject.toml; made on the first run),
and run inside the lab node as reconcile does:
`ansible-playbook` with `connection: local`, `pyinfra @local`. Their playbook, deploy and
templates are in bench/peers/; their data is the manifests' specs with the schema's
defaults filled in (what reconcile's loader reads), written as one YAML vars file.

First, every tool converges each tree once and the bench checks that all three installed
byte-identical files and that each tool's plan on the converged node is empty; it stops
with a diff if not. Then, interleaved (the tools' order rotates every round), medians of
--rounds rounds:

  example       a Cluster (lb1 and lb2 listed, only lb1 runs), a keepalived VirtualIP that
                tracks HAProxy, 3 Backends and 2 Frontends (desired-state/'s, on lb1):
                converge from empty; no-op plan on the converged node
  N             N Backends (5 servers each) + N/10 Frontends, N = 10, 100, 1,000: converge
                from empty (and HAProxy reloads after the start, master `show proc`); plan on
                the converged node
  weight        N = 100 converged, steady HTTP load through a frontend (keep-alive): a
                revision changing one server's weight: time, reloads, failed requests

Plan is `reconcile --dry-run` (also without health, `--no-health`: the peers check none),
`ansible-playbook --check`, `pyinfra --dry`; converge is `reconcile apply`,
`ansible-playbook`, `pyinfra -y`. Every run is measured inside the node
by bench/peers/measure.py: wall time and the peak RSS of the tool's process tree. Prints
the machine's load, a Markdown table with the ratios reconcile/peer, and writes the raw
figures to bench/out/ (the tools' output of the last run in bench/out/peers-logs/).
--desired-state also times reconcile alone on desired-state/ in a demo-shaped lab. Asserts
nothing about speed.

    .venv/bin/python bench/bench_peers.py [--rounds 3] [--sizes 10 100 1000]
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_haproxy_converge import backend, frontend  # noqa: E402
from controller.lab import Lab, temporary_lab  # noqa: E402
from controller.loader import load_tree  # noqa: E402
from reconcilers.base import GENERATED_HEADER  # noqa: E402
from reconcilers.keepalived.render import drain_file  # noqa: E402
from reconcilers.pacemaker.corosync import COROSYNC_LOG  # noqa: E402

PEERS = ROOT / "bench" / "peers"
FIXTURES = ROOT / "tests" / "fixtures" / "haproxy"
VENV = ROOT / ".venv-bench"
NODE = "lb1"
TOOLS = ("reconcile", "ansible", "pyinfra")
FILES = {"haproxy.cfg": "/etc/haproxy/haproxy.cfg", "keepalived.conf": "/etc/keepalived/keepalived.conf",
         "corosync.conf": "/etc/corosync/corosync.conf"}
LOAD_SECONDS = 12.0

# --- the bench's own environment ------------------------------------------------------------


def ensure_venv() -> dict[str, str]:
    """ansible-core and pyinfra in .venv-bench (the `bench` extra), installed on first use."""
    if not (VENV / "bin" / "ansible-playbook").exists() or not (VENV / "bin" / "pyinfra").exists():
        print(f"installing the bench extra (ansible-core, pyinfra) into {VENV} ...", flush=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "-e", f"{ROOT}[bench]"], check=True)
    # The versions from the packages' metadata: the tools themselves run only inside lab
    # nodes (even `ansible-playbook --version` makes ~/.ansible/tmp on the machine it runs on).
    script = "import importlib.metadata as m; print(m.version('ansible-core'), m.version('pyinfra'))"
    ansible, pyinfra = subprocess.run([str(VENV / "bin" / "python"), "-c", script], capture_output=True, text=True,
                                      check=True).stdout.split()
    return {"ansible": f"ansible-core {ansible}", "pyinfra": f"pyinfra {pyinfra}"}


def load() -> str:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"{one} / {five} / {fifteen}"


# --- the trees and the peers' data ------------------------------------------------------------

EXAMPLE = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  stack: pacemaker
  transport: knet
  token: 1000ms
  quorum: {twoNode: true, waitForAll: true}
  crypto: none
  stonithEnabled: false
  properties: {no-quorum-policy: stop, dc-deadtime: 5s}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  nodes: [lb1]
  mode: http
  balance: roundrobin
  healthCheck: {type: http, path: /, expectStatus: 200, interval: 2s}
  servers:
    - {name: app1, address: 198.51.100.11, port: 80}
    - {name: app2, address: 198.51.100.12, port: 80}
    - {name: app3, address: 198.51.100.13, port: 80}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: api}
spec:
  nodes: [lb1]
  balance: leastconn
  healthCheck: {type: http, path: /, expectStatus: 200}
  servers:
    - {name: api1, address: 198.51.100.12, port: 80}
    - {name: api2, address: 198.51.100.13, port: 80, weight: 2}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: legacy}
spec:
  nodes: [lb1]
  mode: tcp
  balance: source
  healthCheck: {type: tcp}
  servers:
    - {name: legacy1, address: 198.51.100.11, port: 80}
    - {name: legacy2, address: 198.51.100.13, port: 80, backup: true}
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: web}
spec:
  nodes: [lb1]
  bind: [{address: 192.0.2.100, port: 80}]
  defaultBackend: app
  rules: [{path: /api, backend: api}, {host: "*.static.example", path: /img/, backend: app}]
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: legacy}
spec:
  nodes: [lb1]
  mode: tcp
  bind: [{address: 192.0.2.100, port: 9000}]
  defaultBackend: legacy
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {name: web-vip}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  interface: eth0
  keepalived: {routerId: 51, priority: {lb1: 150, lb2: 100}, trackHaproxy: true}
"""


def write_example(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "example.yaml").write_text(EXAMPLE)
    return path


def write_backends(path: Path, n: int, heavier: int | None = None) -> Path:
    """N Backends (5 servers) + N/10 Frontends; `heavier`: that Backend's s0 weighs 3."""
    path.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 100):
        docs = [backend(i, 3 if i == heavier else 1) for i in range(start, min(n, start + 100))]
        (path / f"backends-{start}.yaml").write_text("---\n".join(docs))
    (path / "frontends.yaml").write_text("---\n".join(frontend(f) for f in range(max(1, n // 10))))
    return path


def peer_vars(tree_dir: Path, vars_path: Path) -> Path:
    """The peers' data: the specs reconcile's loader read from `tree_dir` (defaults filled
    in), as one YAML file for `-e @FILE` and the pyinfra deploy."""
    import yaml
    tree = load_tree(tree_dir)
    spec = lambda m: m.spec.model_dump(mode="json")  # noqa: E731
    vips = [m for m in tree.on_node("VirtualIP", NODE) if m.spec.manager == "keepalived"]
    if any(v.spec.keepalived.group or v.spec.address is None for v in vips) \
            or tree.on_node("Keepalived", NODE) or tree.on_node("VirtualServer", NODE):
        raise SystemExit("the peers' keepalived template renders one address per VIP, no VRRP groups, "
                         "no Keepalived or VirtualServer manifest")
    clusters = tree.on_node("Cluster", NODE)
    cluster = {"name": clusters[0].metadata.name, "spec": spec(clusters[0])} if clusters else None
    data = {
        "node": NODE, "generated_header": GENERATED_HEADER,
        "haproxy": {"frontends": {m.metadata.name: spec(m) for m in tree.on_node("Frontend", NODE)},
                    "backends": {m.metadata.name: spec(m) for m in tree.on_node("Backend", NODE)}},
        "keepalived": {"vips": [{"name": v.metadata.name, "spec": spec(v)} for v in vips],
                       "clusters": {c.metadata.name: [n.model_dump(mode="json") for n in c.spec.nodes]
                                    for c in tree.of_kind("Cluster")},
                       "addresses": {n: tree.node_address(n) for n in tree.known_nodes if tree.node_address(n)},
                       "drain_file": str(drain_file(Path("/var/lib/reconcile")))},
        "cluster": cluster, "corosync_log": COROSYNC_LOG,
    }
    vars_path.parent.mkdir(parents=True, exist_ok=True)
    vars_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return vars_path


# --- running the tools in the node ----------------------------------------------------------

CLI = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n"); out = b""
try:
    while chunk := s.recv(65536): out += chunk
except (ConnectionResetError, TimeoutError): pass
print(out.decode(), end="")
"""

RESET = r"""
import glob, os, signal, shutil, time
def stop(pidfile):
    try:
        pid = int(open(pidfile).read().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.02)
for pidfile in ("/run/haproxy.pid", "/run/keepalived.pid", "/run/keepalived_vrrp.pid", "/run/pacemakerd.pid",
                "/run/corosync.pid"):
    stop(pidfile)
for path in ("/etc/haproxy/haproxy.cfg", "/etc/haproxy/haproxy.cfg.before-reconcile", "/var/lib/haproxy/server-state",
             "/etc/keepalived/keepalived.conf", "/etc/corosync/corosync.conf", "/run/haproxy.pid",
             "/run/keepalived.pid", "/run/keepalived_vrrp.pid", "/run/keepalived_checkers.pid", "/run/pacemakerd.pid",
             "/run/corosync.pid", *glob.glob("/var/lib/pacemaker/cib/*")):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
shutil.rmtree("/var/lib/reconcile", ignore_errors=True)
"""


class Bench:
    def __init__(self, lab: Lab):
        self.lab = lab
        self.logs = lab.shared / "logs"
        self.logs.mkdir(exist_ok=True)
        self.count = 0

    def argv(self, tool: str, mode: str, tree: Path, vars_path: Path) -> tuple[list[str], dict[str, str]]:
        plan = mode.startswith("plan")
        if tool == "reconcile":
            health = ["--no-health"] if mode == "plan-sync" else []
            return (["reconcile", "--dry-run", *health, "--repo", str(tree)] if plan
                    else ["reconcile", "apply", *health, "--repo", str(tree)]), {}
        if tool == "ansible":
            env = {"LC_ALL": "C.UTF-8", "HOME": "/root", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                   "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False",
                   "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
            return ([str(VENV / "bin" / "ansible-playbook"), "-i", "localhost,", str(PEERS / "playbook.yml"),
                     "-e", f"@{vars_path}", *(["--check"] if plan else [])], env)
        env = {"LC_ALL": "C.UTF-8", "HOME": "/root", "PEERS_VARS": str(vars_path), "PEERS_TEMPLATES": str(PEERS)}
        return ([str(VENV / "bin" / "pyinfra"), "--dry" if plan else "-y", "@local", str(PEERS / "deploy.py")], env)

    def run(self, tool: str, mode: str, tree: Path, vars_path: Path) -> dict[str, Any]:
        """One measured run inside the node; its output in lab.shared/logs."""
        self.count += 1
        prefix = self.logs / f"{self.count:04d}-{tool}-{mode}"
        argv, env = self.argv(tool, mode, tree, vars_path)
        wrapped = ["env", *(f"{k}={v}" for k, v in env.items()), "/usr/bin/python3", str(PEERS / "measure.py"),
                   str(prefix), "--", *argv]
        result = self.lab.exec(NODE, wrapped, timeout=3600, cwd="/root")
        m = json.loads(result.stdout.strip().splitlines()[-1])
        out = Path(f"{prefix}.out").read_text(errors="replace")
        err = Path(f"{prefix}.err").read_text(errors="replace")
        m["changed"] = changes(tool, out + err, m["rc"]) if mode.startswith("plan") else None
        if m["rc"] not in ((0, 2) if tool == "reconcile" and mode.startswith("plan") else (0,)):
            raise SystemExit(f"{tool} {mode} failed (rc {m['rc']}); bench/out/peers-logs/{prefix.name}.out/.err:\n"
                             f"{out[-3000:]}\n{err[-3000:]}")
        return m

    def reset(self) -> None:
        self.lab.exec(NODE, ["/usr/bin/python3", "-c", RESET], timeout=120)

    def reloads(self) -> int | None:
        r = self.lab.exec(NODE, ["/usr/bin/python3", "-c", CLI, "/run/haproxy-master.sock", "show proc; quit"],
                          check=False)
        m = re.search(r"master\s+(\d+)", r.stdout)
        return int(m.group(1)) if m else None

    def admin(self, command: str) -> str:
        return self.lab.exec(NODE, ["/usr/bin/python3", "-c", CLI, "/run/haproxy/admin.sock", command]).stdout

    def files(self) -> dict[str, str | None]:
        out = {}
        for name, path in FILES.items():
            r = self.lab.exec(NODE, ["cat", path], check=False)
            out[name] = r.stdout if r.returncode == 0 else None
        return out


def changes(tool: str, output: str, rc: int) -> bool:
    """Whether the tool's plan had something to change (only plans are asked)."""
    if tool == "reconcile":
        return rc == 2
    if tool == "ansible":
        return any(int(n) for n in re.findall(r"changed=(\d+)", output))
    # pyinfra: the "Change" column of "Detected changes" (the next one, "Conditional
    # Change", lists operations whose `_if` only the run itself can decide)
    if "Detected changes:" not in output:
        return False
    table = output.split("Detected changes:", 1)[-1].split("\n\n", 1)[0].splitlines()[2:]
    return any(re.split(r"\s{2,}", row.strip())[-2] != "-" for row in table if row.strip())


# --- the scenarios ----------------------------------------------------------------------------


def check_identical(bench: Bench, label: str, tree: Path, vars_path: Path) -> None:
    """Each tool converges the tree once; all installed files must be byte-identical, and
    each tool's plan on its converged node must be empty. Stops the bench if not."""
    installed: dict[str, dict[str, str | None]] = {}
    for tool in TOOLS:
        bench.reset()
        bench.run(tool, "converge", tree, vars_path)
        installed[tool] = bench.files()
        plan = bench.run(tool, "plan", tree, vars_path)
        if plan["changed"]:
            raise SystemExit(f"{label}: {tool}'s plan on the node it just converged is not empty "
                             "(its output: bench/out/peers-logs/)")
    # reconcile's files: what `reconcile render` writes where this version has it (it must
    # agree with what apply installed), else what apply installed
    rendered = render(bench, tree)
    problems = []
    reference = {}
    for name in FILES:
        installed_ = installed["reconcile"][name]
        reference[name] = rendered.get(name, installed_)
        if name in rendered and rendered[name] != installed_:
            problems.append(f"{label}: `reconcile render` and `reconcile apply` disagree on {name}")
    for name in FILES:
        ours = reference[name]
        for peer in TOOLS[1:]:
            theirs = installed[peer][name]
            if theirs != ours:
                diff = "".join(difflib.unified_diff((ours or "").splitlines(True), (theirs or "").splitlines(True),
                                                    f"reconcile/{name}", f"{peer}/{name}", n=1))
                problems.append(f"{label}: {peer}'s {name} differs from reconcile's:\n{diff[:4000]}")
    if problems:
        raise SystemExit("NOT BYTE-IDENTICAL — the comparison would be unfair, so no figures:\n" + "\n".join(problems))
    sizes = ", ".join(f"{n} {len(t or ''):,} B" for n, t in reference.items() if t)
    how = f"reconcile render gave {', '.join(sorted(rendered))}" if rendered else "no reconcile render here"
    print(f"  {label}: the three tools' files are byte-identical ({sizes}; {how}); every plan after converge is "
          "empty", flush=True)


def render(bench: Bench, tree: Path) -> dict[str, str]:
    """The files `reconcile render` writes for the tree (run in the node; it changes nothing
    there), by name; empty where this version of reconcile has no render."""
    out = bench.lab.shared / "render" / tree.name
    r = bench.lab.exec(NODE, ["reconcile", "render", "--repo", str(tree), "--node", NODE, "--output-dir", str(out)],
                       check=False)
    if r.returncode != 0:
        return {}
    return {name: (out / path.lstrip("/")).read_text() for name, path in FILES.items()
            if (out / path.lstrip("/")).is_file()}


def rounds_of(rounds: int) -> list[tuple[int, tuple[str, ...]]]:
    """Each round's tool order: rotated, so no tool always runs first (cold caches) or last."""
    return [(r, TOOLS[r % 3:] + TOOLS[:r % 3]) for r in range(rounds)]


def converge_and_plan(bench: Bench, label: str, tree: Path, vars_path: Path, rounds: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {t: [] for t in TOOLS}
    for r, order in rounds_of(rounds):
        for tool in order:
            bench.reset()
            converge = bench.run(tool, "converge", tree, vars_path)
            converge["reloads"] = bench.reloads()
            plan = bench.run(tool, "plan", tree, vars_path)
            # reconcile's plan reports health too; the peers check none: also sync alone
            sync = bench.run(tool, "plan-sync", tree, vars_path) if tool == "reconcile" else plan
            runs[tool].append({"converge": converge, "plan": plan, "plan-sync": sync})
        print(f"  {label}: round {r + 1}/{rounds} done (load {load()})", flush=True)
    return runs


def weight_change(bench: Bench, rounds: int, base: Path, base_vars: Path, heavier: Path, heavier_vars: Path
                  ) -> dict[str, list[dict]]:
    """Converge N=100, then change one server's weight under steady HTTP load."""
    specs = [f"s{j}=127.0.0.1:{20000 + j}" for j in range(5)]  # be-0's servers, behind fe-0 (port 30000)
    servers = bench.lab.popen(NODE, ["/usr/bin/python3", str(FIXTURES / "http_server.py"), *specs],
                              stdout=subprocess.PIPE, text=True)
    runs: dict[str, list[dict]] = {t: [] for t in TOOLS}
    try:
        if servers.stdout.readline().strip() != "ready":
            raise SystemExit("the HTTP servers did not start")
        for r, order in rounds_of(rounds):
            for tool in order:
                bench.reset()
                bench.run(tool, "converge", base, base_vars)
                time.sleep(1.0)
                before = bench.reloads()
                client = bench.lab.popen(NODE, ["/usr/bin/python3", str(FIXTURES / "http_client.py"), "load",
                                                "http://127.0.0.1:30000/", str(LOAD_SECONDS), "4", "--keepalive"],
                                         stdout=subprocess.PIPE, text=True)
                time.sleep(1.0)
                m = bench.run(tool, "converge", heavier, heavier_vars)
                traffic = json.loads(client.communicate(timeout=LOAD_SECONDS + 60)[0])
                m["reloads"] = (bench.reloads() or 0) - (before or 0)
                m["requests"], m["failed"] = traffic["requests"], traffic["requests"] - traffic["ok"]
                m["weight"] = bench.admin("get weight be-0/s0").strip()
                if not m["weight"].startswith("3 "):
                    raise SystemExit(f"{tool}: be-0/s0 weighs {m['weight']!r} after the change, not 3")
                if m["seconds"] > LOAD_SECONDS - 2:
                    print(f"  warning: {tool} took {m['seconds']:.1f}s, longer than the load window", flush=True)
                runs[tool].append(m)
            print(f"  weight change: round {r + 1}/{rounds} done (load {load()})", flush=True)
    finally:
        servers.terminate()
        servers.wait(timeout=10)
    return runs


def desired_state(rounds: int) -> dict[str, Any]:
    """reconcile alone: no-op `--dry-run` of desired-state/ on lb1 of a converged lab shaped
    as the demo's (2 nodes, the AD DC, the SFTP server; lb1's last apply had nothing to do),
    with and without health; the engine's own timings of the last run say where the time
    goes."""
    out: dict[str, Any] = {"plan": [], "plan-sync": []}
    with temporary_lab(nodes=2, domain_controller=True, sftp=True, prefix="peersds") as lab:
        # lb2 first: lb1's Mounts read lb2's SFTP folder. Then lb1 once more, as its agent's
        # next pass would: that apply has nothing to do (the node is converged) and checks the
        # converged renderings natively (a dry-run remembers no native check, and the CIB
        # that crm_verify checks is the one the first apply wrote).
        for node in ("lb2", "lb1", "lb1"):
            r = lab.exec(node, ["reconcile", "apply", "--repo", str(ROOT / "desired-state")], check=False, timeout=600)
            if r.returncode != 0:
                raise SystemExit(f"desired-state/ does not converge on {node}:\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
        logs = lab.shared / "logs"
        logs.mkdir()
        for i in range(rounds):
            for mode in ("plan", "plan-sync"):
                health = ["--no-health"] if mode == "plan-sync" else []
                prefix = logs / f"{i}-{mode}"
                r = lab.exec("lb1", ["/usr/bin/python3", str(PEERS / "measure.py"), str(prefix), "--", "reconcile",
                                     "--dry-run", *health, "--repo", str(ROOT / "desired-state"), "-o", "json"],
                             cwd="/root", timeout=300)
                m = json.loads(r.stdout.strip().splitlines()[-1])
                record = json.loads(Path(f"{prefix}.out").read_text())
                if m["rc"] != 0:
                    raise SystemExit(f"desired-state/ is not in sync on lb1: {record.get('counts')}")
                m["engine"] = record["seconds"]
                m["timings"] = dict(sorted(record["timings"].items(), key=lambda kv: -kv[1])[:6])
                out[mode].append(m)
    return out


# --- the table --------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def seconds(values: list[float]) -> str:
    return f"{med(values):.2f} s" + (f" ({min(values):.2f}–{max(values):.2f})" if len(values) > 1 else "")


def ratio(ours: list[float], theirs: list[float]) -> str:
    return f"{med(ours) / med(theirs):.2f}" if med(theirs) else "–"


def table(results: dict[str, Any]) -> str:
    head = "| measure | reconcile | ansible-core | pyinfra | reconcile/ansible | reconcile/pyinfra |"
    lines = [head, "|" + " --- |" * 6]

    def row(label: str, pick: dict[str, list[float]], fmt=seconds) -> None:
        lines.append(f"| {label} | " + " | ".join(fmt(pick[t]) for t in TOOLS) + " | "
                     + f"{ratio(pick['reconcile'], pick['ansible'])} | {ratio(pick['reconcile'], pick['pyinfra'])} |")

    def pick(runs: dict[str, list[dict]], *path: str) -> dict[str, list[float]]:
        out = {}
        for tool in TOOLS:
            vals = []
            for run in runs[tool]:
                v: Any = run
                for p in path:
                    v = v[p]
                vals.append(float(v))
            out[tool] = vals
        return out

    mb = lambda v: f"{med(v):.0f} MB"  # noqa: E731
    count = lambda v: f"{med(v):g}" + (f" ({min(v):g}–{max(v):g})" if min(v) != max(v) else "")  # noqa: E731
    for label, runs in results["scenarios"].items():
        row(f"{label}: no-op plan, converged node", pick(runs, "plan", "seconds"))
        row(f"{label}: the same, reconcile without health (--no-health)", pick(runs, "plan-sync", "seconds"))
        row(f"{label}: converge from empty", pick(runs, "converge", "seconds"))
        reloads = pick({t: [r for r in runs[t] if r["converge"]["reloads"] is not None] for t in TOOLS},
                       "converge", "reloads")
        if all(reloads.values()):
            lines.append(f"| {label}: HAProxy reloads after the start | "
                         + " | ".join(count(reloads[t]) for t in TOOLS) + " | | |")
        row(f"{label}: peak RSS, converge", pick(runs, "converge", "peak_rss_mb"), mb)
        row(f"{label}: peak RSS, plan", pick(runs, "plan", "peak_rss_mb"), mb)
    w = results.get("weight")
    if w:
        row("weight change under load (N = 100): time", pick(w, "seconds"))
        lines.append("| weight change: HAProxy reloads | " + " | ".join(count(pick(w, "reloads")[t]) for t in TOOLS)
                     + " | | |")
        fails = {t: f"{sum(r['failed'] for r in w[t])} of {sum(r['requests'] for r in w[t]):,}" for t in TOOLS}
        lines.append("| weight change: failed requests (all rounds) | " + " | ".join(fails[t] for t in TOOLS) + " | | |")
        row("weight change: peak RSS", pick(w, "peak_rss_mb"), mb)
    return "\n".join(lines)


def measure_all(bench: Bench, args: argparse.Namespace, results: dict[str, Any]) -> None:
    lab = bench.lab
    trees: dict[str, tuple[Path, Path]] = {}
    example = write_example(lab.shared / "example")
    trees["example"] = (example, peer_vars(example, lab.shared / "vars" / "example.yml"))
    check_identical(bench, "example", *trees["example"])
    for n in args.sizes:
        tree = write_backends(lab.shared / f"n{n}", n)
        trees[f"N = {n:,}"] = (tree, peer_vars(tree, lab.shared / "vars" / f"n{n}.yml"))
        check_identical(bench, f"N = {n:,}", *trees[f"N = {n:,}"])
    for label, (tree, vars_path) in trees.items():
        results["scenarios"][label] = converge_and_plan(bench, label, tree, vars_path, args.rounds)
    if not args.no_weight:
        base = write_backends(lab.shared / "w100", 100)
        heavier = write_backends(lab.shared / "w100-heavier", 100, heavier=0)
        results["weight"] = weight_change(bench, args.rounds, base, peer_vars(base, lab.shared / "vars" / "w.yml"),
                                          heavier, peer_vars(heavier, lab.shared / "vars" / "wh.yml"))
        check = bench.files()["haproxy.cfg"]
        if "server s0 127.0.0.1:20000 weight 3" not in (check or ""):
            raise SystemExit("the weight change did not reach haproxy.cfg")
    bench.reset()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measure (medians over them)")
    p.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000], help="numbers of Backends")
    p.add_argument("--no-weight", action="store_true", help="skip the weight change under load")
    p.add_argument("--desired-state", action="store_true",
                   help="also time reconcile's no-op plan of desired-state/ in a demo-shaped lab (DC, SFTP)")
    args = p.parse_args()
    # SIGTERM (and SIGINT, which a shell's background job ignores) end the bench through
    # its `finally`s: the lab and the HTTP servers go down with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    versions = ensure_venv()
    started, load_before = time.monotonic(), load()
    print(f"{versions['ansible']}; {versions['pyinfra']}; load before: {load_before}", flush=True)
    results: dict[str, Any] = {"versions": versions, "load_before": load_before, "rounds": args.rounds,
                               "date": time.strftime("%Y-%m-%d %H:%M"), "scenarios": {}}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    with temporary_lab(nodes=1, prefix="peers") as lab:
        bench = Bench(lab)
        try:
            measure_all(bench, args, results)
        finally:  # the tools' output outlives the lab
            shutil.rmtree(out / "peers-logs", ignore_errors=True)
            shutil.copytree(bench.logs, out / "peers-logs")
    if args.desired_state:
        results["desired-state"] = desired_state(max(args.rounds, 5))
    results["load_after"] = load()
    results["minutes"] = round((time.monotonic() - started) / 60, 1)
    (out / f"peers-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=1))
    print(f"\n{results['date']}, {args.rounds} interleaved rounds, medians (min–max); load {load_before} before, "
          f"{results['load_after']} after; {results['minutes']} min; {versions['ansible']}; {versions['pyinfra']}\n")
    print(table(results))
    ds = results.get("desired-state")
    if ds:
        for mode, label in (("plan", "reconcile --dry-run"), ("plan-sync", "reconcile --dry-run --no-health")):
            runs = ds[mode]
            print(f"\ndesired-state/ on lb1, converged, {label}: {seconds([r['seconds'] for r in runs])} wall, "
                  f"engine {seconds([r['engine'] for r in runs])}, peak RSS {med([r['peak_rss_mb'] for r in runs]):.0f} MB;"
                  f" slowest steps of the last run: "
                  + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in runs[-1]["timings"].items()))


if __name__ == "__main__":
    main()
