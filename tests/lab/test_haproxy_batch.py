"""One artifact, one apply: a pass's Frontend and Backend changes land in HAProxy together.

Real HAProxy 2.6 in lab nodes, real HTTP servers and load. A revision of hundreds of new
objects is one render, one `haproxy -c`, one install and one reload, with no failed
request; an object `haproxy -c` refuses (found before the apply by validate(), or during
it) fails alone while the rest lands, and the running file is never half of anything; an
agent's own apply is not drift.
"""
from __future__ import annotations

import itertools
import json
import re
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from controller.lab import Lab, temporary_lab
from tests.lab.test_agent import Operator

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
NODE = "lb1"
TREES = itertools.count(1)
SERVERS = ["s1=127.0.0.1:18101", "s2=127.0.0.1:18102", "s3=127.0.0.1:18103"]
CLI = """
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n"); out = b""
try:
    while chunk := s.recv(65536): out += chunk
except (ConnectionResetError, TimeoutError): pass
print(out.decode(), end="")
"""
# Runs in the node: read the managed file as fast as possible until told to stop, and
# keep every distinct content seen (a reader must only ever see a whole file).
FILE_WATCHER = r"""
import hashlib, os, sys, time
seen, out = {}, sys.argv[1]
print("watching", flush=True)
while not os.path.exists(out + ".stop"):
    try:
        data = open("/etc/haproxy/haproxy.cfg", "rb").read()
    except FileNotFoundError:
        data = b""
    seen.setdefault(hashlib.sha256(data).hexdigest(), data)
    time.sleep(0.001)
os.makedirs(out, exist_ok=True)
for digest, data in seen.items():
    open(os.path.join(out, digest), "wb").write(data)
"""


def backend(name: str, ports: list[int], extra: str = "", check: str = "{type: tcp, interval: 1s}") -> str:
    servers = "\n".join(f"    - {{name: s{i + 1}, address: 127.0.0.1, port: {p}}}" for i, p in enumerate(ports))
    return textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Backend
        metadata: {{name: {name}}}
        spec:
          node: lb1
          healthCheck: {check}
        """) + textwrap.indent(textwrap.dedent(extra), "  ") + f"  servers:\n{servers}\n"


def frontend(name: str, port: int, default: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Frontend
        metadata: {{name: {name}}}
        spec:
          node: lb1
          bind: [{{address: 127.0.0.1, port: {port}}}]
          defaultBackend: {default}
        """)


def refused_backend(name: str) -> str:
    """A Backend the schema accepts and `haproxy -c` refuses (a check interval of 0)."""
    return backend(name, [18101], check="{type: tcp, interval: 0ms}")


class LB:
    """lb1: trees, `reconcile`, the runtime API and the master CLI."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def tree(self, *docs: str) -> Path:
        path = self.lab.shared / f"tree{next(TREES)}"
        path.mkdir()
        (path / "haproxy.yaml").write_text("---\n".join(docs))
        return path

    def reconcile(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.reconcile(NODE, *args, timeout=300)

    def api(self, command: str, socket: str = "/run/haproxy/admin.sock") -> str:
        return self.lab.exec(NODE, ["/usr/bin/python3", "-c", CLI, socket, command]).stdout

    def proc(self) -> tuple[int, list[str]]:
        """The master's reload count and its workers' lines (`show proc`)."""
        text = self.api("show proc; quit", "/run/haproxy-master.sock")
        return int(re.search(r"master\s+(\d+)", text).group(1)), re.findall(r"^\d+\s+worker.*$", text, re.M)

    def config(self) -> str:
        return self.lab.read_file(NODE, "/etc/haproxy/haproxy.cfg")

    def count(self, port: int, n: int) -> dict:
        return json.loads(self.lab.exec(NODE, ["/usr/bin/python3", str(FIXTURES / "http_client.py"), "count",
                                               f"http://127.0.0.1:{port}/", str(n)]).stdout)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=2, prefix="hb") as lab:
        servers = lab.popen(NODE, ["/usr/bin/python3", str(FIXTURES / "http_server.py"), *SERVERS],
                            stdout=subprocess.PIPE, text=True)
        try:
            assert servers.stdout.readline().strip() == "ready"
            yield lab
        finally:
            servers.terminate()
            servers.wait(timeout=10)


@pytest.fixture
def lb(lab: Lab) -> Iterator[LB]:
    """lb1 without HAProxy, its file or reconcile's state."""
    yield LB(lab)
    pid = lab.exec(NODE, ["cat", "/run/haproxy.pid"], check=False).stdout.strip()
    if pid.isdigit():
        lab.exec(NODE, ["kill", pid], check=False)
        lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"], timeout=30)
    lab.exec(NODE, ["rm", "-rf", "/etc/haproxy/haproxy.cfg", "/var/lib/haproxy/server-state", "/var/lib/reconcile",
                    "/run/haproxy.pid"], check=False)


def base() -> list[str]:
    return [backend("app", [18101, 18102, 18103], check="{type: http, interval: 500ms}"), frontend("web", 8180, "app")]


def test_200_new_backends_and_20_frontends_land_with_one_reload_and_no_failed_request(lb: LB) -> None:
    lb.reconcile("apply", "--repo", str(lb.tree(*base())))
    time.sleep(1.5)  # health checks up
    reloads, _ = lb.proc()
    many = [backend(f"be-{i}", [18101 + (i + j) % 3 for j in range(5)]) for i in range(200)]
    many += [frontend(f"fe-{f}", 8200 + f, f"be-{f * 10}") for f in range(20)]
    tree = lb.tree(*base(), *many)
    load = [lb.lab.popen(NODE, ["/usr/bin/python3", str(FIXTURES / "http_client.py"), "load",
                                "http://127.0.0.1:8180/", "6", "4", *keepalive], stdout=subprocess.PIPE, text=True)
            for keepalive in ([], ["--keepalive"])]
    time.sleep(1.0)  # steady load before the revision lands
    result = lb.reconcile("apply", "--repo", str(tree), "-o", "json")
    loads = [json.loads(p.communicate(timeout=60)[0]) for p in load]
    record = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:]
    assert record["counts"].get("changed") == 220, record["counts"]
    after, workers = lb.proc()
    assert after == reloads + 1, f"{after - reloads} reloads for one revision; workers: {workers}"
    for load_result in loads:
        assert load_result["requests"] > 20, load_result  # steady load throughout (a busy machine makes fewer)
        assert load_result["errors"] == 0 and load_result["non2xx"] == 0, load_result
    assert set(lb.count(8219, 9)["servers"]) <= {"s1", "s2", "s3"}  # a new frontend serves
    assert lb.reconcile("--dry-run", "--repo", str(tree)).returncode == 0


def watch_file(lb: LB, name: str) -> tuple[subprocess.Popen, Path]:
    out = lb.lab.shared / name
    watcher = lb.lab.popen(NODE, ["/usr/bin/python3", "-c", FILE_WATCHER, str(out)], stdout=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().strip() == "watching"
    return watcher, out


def versions_seen(watcher: subprocess.Popen, out: Path) -> set[str]:
    Path(str(out) + ".stop").touch()
    watcher.wait(timeout=30)
    return {p.read_text() for p in out.iterdir()}


def test_a_backend_validate_refuses_fails_alone_and_the_rest_lands(lb: LB) -> None:
    lb.reconcile("apply", "--repo", str(lb.tree(*base())))
    before = lb.config()
    watcher, out = watch_file(lb, "seen-validate")
    tree = lb.tree(*base(), backend("good1", [18101]), backend("good2", [18102]), refused_backend("bad"),
                   frontend("uses-bad", 8181, "bad"), frontend("uses-good", 8182, "good1"))
    result = lb.reconcile("apply", "--repo", str(tree))
    seen = versions_seen(watcher, out)
    assert result.returncode == 1
    # (each object line ends with its health)
    assert re.search(r"x Backend bad \(failed\)[^\n]*\n\s+refused by the native validator: backend bad \(line \d+\): "
                     r".*invalid value 0 for argument 'inter'", result.stdout), result.stdout
    assert re.search(r"Frontend uses-bad \(skipped\)[^\n]*\n\s+skipped: Backend/bad failed", result.stdout), result.stdout
    config = lb.config()
    assert "backend good1" in config and "backend good2" in config and "frontend uses-good" in config
    assert "backend bad" not in config and "frontend uses-bad" not in config
    assert seen <= {before, config}, "a reader saw a file that was neither the old one nor the new one"
    assert lb.count(8182, 3)["errors"] == 0


DRIVER = """\
import json, sys
import reconcilers
from controller.engine import Engine
from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.haproxy.reconciler import HAProxyReconciler

class ApplyTimeOnly(HAProxyReconciler):
    def validate(self, node):  # leave every refusal to the apply's own check
        return []

for kind in ("HAProxy", "Backend", "Frontend"):  # one owner of the three kinds
    reconcilers.REGISTRY[kind] = "__main__:ApplyTimeOnly"
node = Node("lb1", Runner(recording=True))
record = Engine(load_tree(sys.argv[1]), node).apply()
checks = [r.argv for r in node.runner.records if r.argv[:2] == ["haproxy", "-c"]]
print(json.dumps({"objects": {f"{o.kind}/{o.name}": [o.status, o.error] for o in record.objects},
                  "checks": len(checks)}))
"""


def test_a_backend_haproxy_refuses_during_the_apply_fails_alone_and_the_rest_lands(lb: LB) -> None:
    lb.reconcile("apply", "--repo", str(lb.tree(*base())))
    reloads, _ = lb.proc()
    before = lb.config()
    watcher, out = watch_file(lb, "seen-apply")
    tree = lb.tree(*base(), backend("good1", [18101]), refused_backend("bad"), backend("good2", [18102]),
                   frontend("uses-good", 8183, "good2"))
    result = json.loads(lb.lab.exec(NODE, ["python3", "-c", DRIVER, str(tree)], timeout=300).stdout)
    seen = versions_seen(watcher, out)
    objects = result["objects"]
    status, error = objects["Backend/bad"]
    assert status == "failed" and re.search(r"backend bad \(line \d+\): .*invalid value 0 for argument 'inter'", error)
    assert all(objects[k][0] == "changed" for k in ("Backend/good1", "Backend/good2", "Frontend/uses-good")), objects
    # one check of the whole batch (refused), one of the batch without `bad` (accepted)
    assert result["checks"] == 2
    config = lb.config()
    assert "backend good1" in config and "backend good2" in config and "backend bad" not in config
    assert seen <= {before, config}
    assert lb.proc()[0] == reloads + 1
    assert lb.count(8183, 3)["errors"] == 0


def test_an_agent_run_after_a_commit_is_not_drift(lab: Lab, lb: LB) -> None:
    ops = Operator(lab)
    try:
        ops.start()
        sha = ops.push({"haproxy.yaml": "---\n".join(base())})
        ops.converged_at(sha)
        time.sleep(1.0)  # the watch polls every 0.2 s: let it see HAProxy's start
        before = ops.status()["agent"]
        # a commit that changes servers at run time, adds a backend and a frontend (a reload)
        changed = [backend("app", [18101, 18102], check="{type: http, interval: 500ms}"),
                   frontend("web", 8180, "app"), backend("more", [18103]), frontend("more", 8184, "more")]
        sha = ops.push({"haproxy.yaml": "---\n".join(changed)})
        ops.converged_at(sha)
        time.sleep(2.0)  # watch events of the agent's own writes, reload and runtime changes
        after = ops.status()["agent"]
        assert after["driftEvents"] == before["driftEvents"], (before, after)
        assert after["runs"] == before["runs"] + 1, "one commit, one run"
        metrics = lab.exec(NODE, ["python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                                  "'http://127.0.0.1:9358/metrics', timeout=5).read().decode())"]).stdout
        drift = [line for line in metrics.splitlines() if line.startswith("reconcile_drift_events_total")]
        assert all(line.endswith(" 0.0") for line in drift), drift
        assert lb.count(8184, 3)["errors"] == 0
        assert ops.stop() == 0
    finally:
        ops.close()
