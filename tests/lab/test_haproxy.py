"""Frontend and Backend against a real HAProxy 2.6 in a lab node, real HTTP servers behind it.

One lab (lb1, lb2) for the module; every test starts from a node without HAProxy and
without reconcile state, and runs `reconcile` inside lb1 as an operator would. The HTTP
servers (tests/fixtures/haproxy/http_server.py) answer with their own name, so the tests
count where requests went.
"""
from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from controller.lab import Lab, temporary_lab
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
SERVER = str(FIXTURES / "http_server.py")
CLIENT = str(FIXTURES / "http_client.py")
NODE = "lb1"
# Every test server but s3 in one process; s3 alone so that a test can stop it.
SERVERS = ["s1=127.0.0.1:18001", "s2=127.0.0.1:18002", "a1=127.0.0.1:18011", "h1=127.0.0.1:18021",
           "n1=127.0.0.1:18031"]
S3 = ["s3=127.0.0.1:18003"]

SOCKET_SNIPPET = """
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n"); out = b""
try:
    while chunk := s.recv(65536): out += chunk
except (ConnectionResetError, TimeoutError): pass
print(out.decode(), end="")
"""


def backend(name: str, servers: list[tuple[str, int]], extra: str = "", check: str = "{type: http, interval: 500ms}") \
        -> str:
    lines = "\n".join(f"    - {{name: {n}, address: 127.0.0.1, port: {p}}}" for n, p in servers)
    return textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Backend
        metadata: {{name: {name}}}
        spec:
          node: lb1
          healthCheck: {check}
        """) + (textwrap.indent(textwrap.dedent(extra), "  ") if extra else "") + f"  servers:\n{lines}\n"


def frontend(name: str, port: int, default: str, extra: str = "", address: str = "127.0.0.1") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconcile/v1
        kind: Frontend
        metadata: {{name: {name}}}
        spec:
          node: lb1
          bind: [{{address: {address}, port: {port}}}]
          defaultBackend: {default}
        """) + (textwrap.indent(textwrap.dedent(extra), "  ") if extra else "")


APP = [("s1", 18001), ("s2", 18002), ("s3", 18003)]
TREES = itertools.count(1)


class LB:
    """lb1 as the tests use it: trees, `reconcile`, the runtime API, HTTP clients."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def tree(self, *docs: str) -> Path:
        path = self.lab.shared / f"tree{next(TREES)}"
        path.mkdir()
        (path / "haproxy.yaml").write_text("---\n".join(docs))
        return path

    def reconcile(self, *args: str, check_rc: int | None = None) -> subprocess.CompletedProcess[str]:
        result = self.lab.reconcile(NODE, *args, timeout=120)
        if check_rc is not None:
            assert result.returncode == check_rc, f"rc {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def apply(self, tree: Path, rc: int = 0) -> subprocess.CompletedProcess[str]:
        return self.reconcile("apply", "--repo", str(tree), check_rc=rc)

    def plan(self, tree: Path, rc: int) -> subprocess.CompletedProcess[str]:
        return self.reconcile("--dry-run", "--repo", str(tree), check_rc=rc)

    def api(self, command: str, socket: str = "/run/haproxy/admin.sock") -> str:
        return self.lab.exec(NODE, ["/usr/bin/python3", "-c", SOCKET_SNIPPET, socket, command]).stdout

    def reloads(self) -> int:
        text = self.api("show proc; quit", "/run/haproxy-master.sock")
        return int(re.search(r"master\s+(\d+)", text).group(1))

    def servers(self, backend: str) -> dict[str, dict[str, str]]:
        """backend's servers as HAProxy runs them (`show servers state`)."""
        lines = self.api(f"show servers state {backend}").splitlines()
        header = lines[1][2:].split()
        rows = [dict(zip(header, line.split())) for line in lines[2:] if line.strip()]
        return {r["srv_name"]: r for r in rows}

    def client(self, *args: str) -> dict:
        out = self.lab.exec(NODE, ["/usr/bin/python3", CLIENT, *args], timeout=120).stdout
        return json.loads(out)

    def count(self, port: int, n: int, *args: str, path: str = "/") -> dict[str, int]:
        result = self.client("count", f"http://127.0.0.1:{port}{path}", str(n), *args)
        assert result["errors"] == 0 and set(result["statuses"]) <= {"200"}, result
        return result["servers"]

    def config(self) -> str:
        return self.lab.read_file(NODE, "/etc/haproxy/haproxy.cfg")

    def wait_status(self, backend: str, server: str, status: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = [line.split(",") for line in self.api(f"show stat {backend} 4 -1").splitlines()[1:]]
            now = {r[1]: r[17] for r in rows if len(r) > 17}
            if now.get(server, "").startswith(status):
                return
            assert time.monotonic() < deadline, f"{backend}/{server} is {now.get(server)}, not {status}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=2, prefix="hp") as lab:
        servers = lab.popen(NODE, ["/usr/bin/python3", SERVER, *SERVERS], stdout=subprocess.PIPE, text=True)
        try:
            assert servers.stdout.readline().strip() == "ready"
            yield lab
        finally:
            servers.terminate()
            servers.wait(timeout=10)


@pytest.fixture
def lb(lab: Lab) -> Iterator[LB]:
    """lb1 without HAProxy, its file or reconcile's state; s3 running in its own process."""
    s3 = lab.popen(NODE, ["/usr/bin/python3", SERVER, *S3], stdout=subprocess.PIPE, text=True)
    assert s3.stdout.readline().strip() == "ready"
    lb = LB(lab)
    try:
        yield lb
    finally:
        pid = lab.exec(NODE, ["cat", "/run/haproxy.pid"], check=False).stdout.strip()
        if pid.isdigit():  # the master reconcile started; its workers follow it
            lab.exec(NODE, ["kill", pid], check=False)
            lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"], timeout=30)
        lab.exec(NODE, ["rm", "-rf", "/etc/haproxy/haproxy.cfg", "/var/lib/haproxy/server-state",
                        "/var/lib/reconcile", "/run/haproxy.pid"], check=False)
        s3.terminate()
        s3.wait(timeout=10)


# --- traffic follows the algorithm ----------------------------------------------------------


def test_roundrobin_spreads_evenly_over_three_servers(lb: LB) -> None:
    tree = lb.tree(backend("app", APP), frontend("web", 8080, "app"))
    lb.plan(tree, rc=2)
    lb.apply(tree)
    counts = lb.count(8080, 300)
    assert sorted(counts) == ["s1", "s2", "s3"]
    assert all(95 <= n <= 105 for n in counts.values()), counts
    result = lb.apply(tree)  # the second apply has nothing to do
    assert "in-sync" in result.stdout and "applied" not in result.stdout
    lb.plan(tree, rc=0)


def test_source_pins_a_client(lb: LB) -> None:
    tree = lb.tree(backend("pin", APP, extra="balance: source\n"), frontend("pin", 8081, "pin"))
    lb.apply(tree)
    assert "hash-type consistent" in lb.config()  # so servers can still be added at run time
    seen = {}
    for i in range(1, 11):
        counts = lb.count(8081, 15, "--source", f"127.0.0.{i}")
        assert len(counts) == 1, f"client 127.0.0.{i} was not pinned: {counts}"
        seen[i] = next(iter(counts))
    assert len(set(seen.values())) >= 2, f"every client on one server: {seen}"


def test_leastconn_prefers_the_idle_server(lb: LB) -> None:
    tree = lb.tree(backend("lc", APP[:2], extra="balance: leastconn\n"), frontend("lc", 8082, "lc"))
    lb.apply(tree)
    result = lb.client("slow-then-count", "http://127.0.0.1:8082/slow/3", "http://127.0.0.1:8082/", "20")
    busy = result["slow"]
    idle = ({"s1", "s2"} - {busy}).pop()
    # roundrobin would give 10/10; a loaded CI machine may let a finished stream still
    # count for a moment, hence not a strict 20
    assert result["servers"].get(idle, 0) >= 18, result


def test_a_path_rule_and_a_host_rule_route_to_their_backends(lb: LB) -> None:
    rules = """\
        rules:
          - {path: /api, backend: api}
          - {host: admin.example.test, backend: admin}
        """
    tree = lb.tree(backend("app", APP), backend("api", [("a1", 18011)]), backend("admin", [("h1", 18021)]),
                   frontend("web", 8083, "app", extra=rules))
    lb.apply(tree)
    assert lb.count(8083, 5, path="/api") == {"a1": 5}
    assert lb.count(8083, 5, path="/api/users/1") == {"a1": 5}
    assert set(lb.count(8083, 6, path="/apiary")) <= {"s1", "s2", "s3"}  # a prefix of whole segments
    assert lb.count(8083, 5, "--host", "admin.example.test:8083") == {"h1": 5}
    assert set(lb.count(8083, 6, path="/")) == {"s1", "s2", "s3"}


def test_a_failed_health_check_takes_a_server_out_and_is_not_drift(lb: LB, lab: Lab) -> None:
    tree = lb.tree(backend("app", APP, check="{type: http, path: /, interval: 300ms, fall: 2, rise: 1}"),
                   frontend("web", 8084, "app"))
    lb.apply(tree)
    lb.wait_status("app", "s3", "UP")
    s3_pid = lab.exec(NODE, ["sh", "-c", "ss -Hltnp 'sport = :18003' | grep -o 'pid=[0-9]*' | cut -d= -f2"]).stdout
    lab.exec(NODE, ["kill", s3_pid.strip()])  # our s3 test server (the fixture reaps it)
    lb.wait_status("app", "s3", "DOWN")
    counts = lb.count(8084, 60)
    assert set(counts) == {"s1", "s2"}, counts
    lb.plan(tree, rc=0)  # a server down by its health check is not a change to make


# --- drift, idempotence, ownership ---------------------------------------------------------------


def test_hand_made_drift_is_planned_then_corrected(lb: LB) -> None:
    tree = lb.tree(backend("app", APP), frontend("web", 8085, "app"))
    lb.apply(tree)
    lb.api("set server app/s2 state maint")  # an operator disables a server by hand
    lb.api("set server app/s3 weight 7")
    lb.lab.exec(NODE, ["sed", "-i", "-e", "s/timeout client 30s/timeout client 99s/",  # in reconcile's defaults
                       "-e", r"s/^    default_backend app/    option forwardfor\n    default_backend app/",  # in web's
                       "/etc/haproxy/haproxy.cfg"])
    plan = lb.plan(tree, rc=2).stdout
    assert "servers.s2.state: maint → ready" in plan
    assert "servers.s3.weight: 7 → 1" in plan
    assert "shared: \"edited by hand: 'timeout client 30s' -> 'timeout client 99s'\" → \"as generated\"" in plan
    assert "lines: -'option forwardfor'" in plan
    assert lb.servers("app")["s2"]["srv_admin_state"] == "1"  # the plan changed nothing
    result = lb.apply(tree)
    assert "drift corrected" in result.stdout
    assert lb.servers("app")["s2"]["srv_admin_state"] == "0"
    assert "timeout client 99s" not in lb.config()
    assert set(lb.count(8085, 30)) == {"s1", "s2", "s3"}
    second = lb.apply(tree)
    assert "applied" not in second.stdout and "drift" not in second.stdout
    lb.plan(tree, rc=0)


def test_a_declared_ignore_lets_an_operator_drain(lb: LB) -> None:
    tree = lb.tree(backend("app", APP, extra="ignore: [state]\n"), frontend("web", 8086, "app"))
    lb.apply(tree)
    lb.api("set server app/s1 state drain")
    lb.plan(tree, rc=0)
    assert lb.servers("app")["s1"]["srv_admin_state"] == "8"


def test_haproxy_is_started_when_it_does_not_run(lb: LB) -> None:
    tree = lb.tree(backend("app", APP), frontend("web", 8087, "app"))
    lb.apply(tree)
    pid = lb.lab.read_file(NODE, "/run/haproxy.pid").strip()
    lb.lab.exec(NODE, ["kill", pid])
    lb.lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"], timeout=30)
    plan = lb.plan(tree, rc=2).stdout
    # killed by hand, its file the one it last ran: nothing runs, which is drift (issue 17);
    # a file reconcile wrote and HAProxy never loaded would be pending work (issue 21, test_faults)
    assert "+ Backend app" in plan and "+ Frontend web" in plan and "HAProxy does not run" in plan, plan
    assert plan.count("drift: changed outside git") == 2 and "pending work" not in plan, plan
    lb.apply(tree)
    assert set(lb.count(8087, 6)) == {"s1", "s2", "s3"}


def test_a_broken_tree_or_a_foreign_config_changes_nothing(lb: LB) -> None:
    good = lb.tree(backend("app", APP), frontend("web", 8088, "app"))
    lb.apply(good)
    before = lb.config()
    broken = lb.tree(backend("app", [("s1", 18001), ("s1", 18002)]), frontend("web", 8088, "app"))
    result = lb.reconcile("apply", "--repo", str(broken), check_rc=1)
    assert "spec.servers[1].name: duplicate server name 's1'" in result.stderr
    assert lb.config() == before
    # a hand-written configuration with its own proxies is never overwritten
    pid = lb.lab.read_file(NODE, "/run/haproxy.pid").strip()
    lb.lab.exec(NODE, ["kill", pid])
    lb.lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"], timeout=30)
    mine = "global\n    maxconn 100\nfrontend www\n    bind 127.0.0.1:8089\n"
    lb.lab.write_file(NODE, "/etc/haproxy/haproxy.cfg", mine)
    result = lb.reconcile("apply", "--repo", str(good), check_rc=1)
    assert "was not generated by reconcile and defines frontend www" in result.stdout
    assert lb.config() == mine


# --- server changes without reload; structural changes with one ---------------------------------


def test_server_changes_use_the_runtime_api_and_the_file_agrees(lb: LB) -> None:
    tree = lb.tree(backend("app", APP[:2]), frontend("web", 8090, "app"))
    lb.apply(tree)
    reloads = lb.reloads()
    servers = "\n".join([
        "    - {name: s1, address: 127.0.0.1, port: 18001, weight: 3}",
        "    - {name: s2, address: 127.0.0.1, port: 18002, state: drain}",
        "    - {name: s3, address: 127.0.0.1, port: 18003}",  # added
        "    - {name: n1, address: 127.0.0.1, port: 18031, maxconn: 20}",  # added
    ])
    changed = lb.tree(backend("app", []).replace("  servers:\n", f"  servers:\n{servers}"), frontend("web", 8090, "app"))
    plan = lb.plan(changed, rc=2).stdout
    assert "runtime API, no reload" in plan and "reload HAProxy" not in plan
    lb.apply(changed)
    assert lb.reloads() == reloads, "a server change must not reload"
    running = lb.servers("app")
    assert running["s1"]["srv_uweight"] == "3" and running["s2"]["srv_admin_state"] == "8"
    assert running["s3"]["srv_admin_state"] == "0" and running["s3"]["srv_check_state"] == "6"  # enabled, checked
    assert "server n1 127.0.0.1:18031 weight 1 maxconn 20 check" in lb.config()
    lb.wait_status("app", "s3", "UP")
    assert set(lb.count(8090, 40)) == {"s1", "s3", "n1"}  # s2 drained
    # removal: drained, deleted, gone from the file, still no reload
    lb.apply(tree)
    assert sorted(lb.servers("app")) == ["s1", "s2"] and "server s3" not in lb.config()
    assert lb.reloads() == reloads
    lb.plan(tree, rc=0)
    # a structural change reloads once, hitlessly; runtime state survives it
    lb.api("set server app/s1 weight 5")
    leastconn = lb.tree(backend("app", APP[:2], extra="balance: leastconn\nignore: [weight]\n"),
                        frontend("web", 8090, "app"))
    lb.apply(leastconn)
    assert lb.reloads() == reloads + 1
    assert lb.servers("app")["s1"]["srv_uweight"] == "5"  # kept through the reload by the state file
    lb.plan(leastconn, rc=0)


def test_a_frontend_binds_a_virtual_ip_this_node_does_not_hold(lb: LB, lab: Lab) -> None:
    """keepalived's BACKUP node runs HAProxy too: its bind to the VIP must work before the
    address arrives, and serve as soon as it does, without a reload."""
    vip = textwrap.dedent("""\
        apiVersion: reconcile/v1
        kind: Cluster
        metadata: {name: web}
        spec:
          nodes:
            - {name: lb1, id: 1, address: 192.0.2.11/24}
            - {name: lb2, id: 2, address: 192.0.2.12/24}
          crypto: none
          stonithEnabled: false
        ---
        apiVersion: reconcile/v1
        kind: VirtualIP
        metadata: {name: web-vip}
        spec:
          node: lb1
          manager: keepalived
          address: 192.0.2.100/24
          keepalived: {routerId: 51}
        """)
    tree = lb.tree(vip, backend("app", APP), frontend("web", 8091, "app", address="192.0.2.100"))
    # Only HAProxy's kinds: the VIP must stay away from lb1 (no keepalived, no cluster).
    driver = textwrap.dedent(f"""\
        from controller.engine import Engine
        from controller.loader import Tree, load_tree
        from reconcilers.base import Node, Runner
        full = load_tree({str(tree)!r})
        tree = Tree(full.root, [i for i in full.items if i.kind in ("Frontend", "Backend")], full.revision)
        record = Engine(tree, Node("lb1", Runner())).apply()
        print(record.result, [(o.kind, o.name, o.status, o.error) for o in record.objects])
        """)
    out = lab.exec(NODE, ["python3", "-c", driver]).stdout
    assert out.startswith("converged"), out
    assert "192.0.2.100" not in lab.exec(NODE, ["ip", "-br", "addr"]).stdout
    assert "192.0.2.100:8091" in lab.exec(NODE, ["ss", "-Hltn"]).stdout
    reloads = lb.reloads()
    lab.exec(NODE, ["ip", "addr", "add", "192.0.2.100/24", "dev", "eth0"])  # as keepalived would on failover
    try:
        counts = json.loads(lab.exec("lb2", ["/usr/bin/python3", CLIENT, "count", "http://192.0.2.100:8091/", "6"]).stdout)
        assert counts["errors"] == 0 and set(counts["servers"]) == {"s1", "s2", "s3"}, counts
        assert lb.reloads() == reloads
    finally:
        lab.exec(NODE, ["ip", "addr", "del", "192.0.2.100/24", "dev", "eth0"])


def test_dry_run_asks_haproxy_only_read_only_questions(lb: LB, lab: Lab) -> None:
    """The whole dry-run path under the recorder, with drift to plan: nothing outside the
    read-only allow-list, and nothing changes."""
    tree = lb.tree(backend("app", APP), frontend("web", 8092, "app"))
    lb.apply(tree)
    lb.api("set server app/s2 state maint")
    driver = textwrap.dedent(f"""\
        import json
        from controller.engine import Engine
        from controller.loader import load_tree
        from controller.state import Inventory
        from reconcilers.base import Node, Runner
        node = Node("lb1", Runner(dry_run=True, recording=True))
        engine = Engine(load_tree({str(tree)!r}), node, inventory=Inventory(node.state_dir))
        record = engine.plan()
        print(json.dumps({{"exit": record.exit_code(), "errors": record.errors,
                          "records": [[r.what, r.argv] for r in node.runner.records]}}))
        """)
    result = json.loads(lab.exec(NODE, ["python3", "-c", driver]).stdout)
    assert result["exit"] == 2 and result["errors"] == []
    assert result["records"], "the dry-run asked nothing?"
    refused = [(what, argv) for what, argv in result["records"] if not allowed(what, argv)]
    assert refused == []
    # The rendering is what apply installed (the drift is at run time only): its check by
    # haproxy -c is remembered, so the plan asks only the runtime API.
    assert {what for what, _ in result["records"]} == {"haproxy-api"}
    assert lb.servers("app")["s2"]["srv_admin_state"] == "1"
    print("dry-run asked:", sorted({shlex.join(a) if w == "exec" else " ".join(a) for w, a in result["records"]}))


def test_watch_reports_a_server_disabled_by_hand_and_a_file_edit(lb: LB, lab: Lab) -> None:
    tree = lb.tree(backend("app", APP), frontend("web", 8093, "app"))
    lb.apply(tree)
    driver = textwrap.dedent("""\
        import sys, time
        from reconcilers.haproxy.reconciler import HAProxyReconciler
        from reconcilers.base import Node, Runner
        events = HAProxyReconciler().watch(Node("lb1", Runner(dry_run=True)))
        print("watching", flush=True)
        for _ in range(2):
            reason = next(events)
            print(f"{time.monotonic():.3f} {reason}", flush=True)
        """)
    watcher = lab.popen(NODE, ["python3", "-c", driver], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().strip() == "watching"
        time.sleep(0.3)
        started = float(lab.exec(NODE, ["python3", "-c", "import time; print(time.monotonic())"]).stdout)
        lb.api("set server app/s2 state maint")
        at, reason = watcher.stdout.readline().split(" ", 1)
        assert reason.strip() == "HAProxy server state changed"
        assert float(at) - started < 1.0  # polled every 200 ms (the node shares the host's clock)
        lab.exec(NODE, ["sed", "-i", "s/retries 3/retries 4/", "/etc/haproxy/haproxy.cfg"])
        assert watcher.stdout.readline().split(" ", 1)[1].strip() == "/etc/haproxy/haproxy.cfg changed"
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)


def test_a_reload_haproxy_refuses_keeps_the_old_configuration_running_and_on_disk(lb: LB) -> None:
    tree = lb.tree(backend("app", APP), frontend("web", 8094, "app"))
    lb.apply(tree)
    before = lb.config()
    # haproxy -c accepts this, but the port is taken (by the test server s1)
    taken = lb.tree(backend("app", APP), frontend("web", 8094, "app"), frontend("clash", 18001, "app"))
    result = lb.reconcile("apply", "--repo", str(taken), check_rc=1)
    assert "HAProxy refused to load the new configuration and keeps running the previous one" in result.stdout
    assert "was put back" in result.stdout and "(127.0.0.1:18001)" in result.stdout
    assert lb.config() == before  # a restart would run what runs now
    assert set(lb.count(8094, 6)) == {"s1", "s2", "s3"}
    lb.plan(tree, rc=0)
