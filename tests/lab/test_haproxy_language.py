"""HAProxy as operators write it, on a real HAProxy 2.6 in lab nodes with a real AD DC.

TLS on a floating address (keepalived) serving HTTP/2 and HTTP/1.1, a certificate replaced
at run time under load; a `mode tcp` backend checked over HTTP on another port (the
Patroni pattern); servers by host name through a `resolvers` section on the DC's DNS;
IPv6 binds and servers; logs on a node without syslog; a stats page behind a password from
a secret file; maps changed at run time; bad input refused with `file:line: field`; and a
running HAProxy reconcile did not write, imported and taken over.
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

from controller.lab import ADMIN_PASSWORD, ADMIN_USER, DC_NODE, DOMAIN, Lab, temporary_lab

pytestmark = pytest.mark.lab

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"
CLIENT = str(FIXTURES / "http_client.py")
NODE = "lb1"
TREES = itertools.count(1)
CLI = """
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n"); out = b""
try:
    while chunk := s.recv(65536): out += chunk
except (ConnectionResetError, TimeoutError): pass
print(out.decode(), end="")
"""
STATS_PASSWORD = "Stats pass#7 q"  # a space and a hash: quoted in the file

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
HAPROXY = f"""\
apiVersion: reconcile/v1
kind: HAProxy
metadata: {{name: edge}}
spec:
  node: lb1
  maxconn: 4000
  logging: {{to: ring}}
  global:
    - ssl-default-bind-options ssl-min-ver TLSv1.2
  defaults:
    - name: web
      directives:
        - mode http
        - log global
        - option httplog
        - timeout connect 5s
        - timeout client 30s
        - timeout server 30s
  sections:
    - type: resolvers
      name: dc
      directives:
        - nameserver dc1 192.0.2.2:53
        - hold valid 1s
        - timeout resolve 500ms
        - timeout retry 500ms
"""


def doc(text: str) -> str:
    return textwrap.dedent(text)


class LB:
    """lb1 as the tests use it: trees, `reconcile`, the runtime API, clients from lb2."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def tree(self, *docs: str) -> Path:
        path = self.lab.shared / f"tree{next(TREES)}"
        path.mkdir()
        (path / "haproxy.yaml").write_text("---\n".join([CLUSTER, HAPROXY, *docs]))
        return path

    def reconcile(self, *args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = self.lab.reconcile(NODE, *args, timeout=300)
        if rc is not None:
            assert result.returncode == rc, f"rc {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def apply(self, tree: Path, rc: int = 0) -> subprocess.CompletedProcess[str]:
        return self.reconcile("apply", "--repo", str(tree), rc=rc)

    def api(self, command: str, socket: str = "/run/haproxy/admin.sock") -> str:
        return self.lab.exec(NODE, ["/usr/bin/python3", "-c", CLI, socket, command]).stdout

    def reloads(self) -> int:
        return int(re.search(r"master\s+(\d+)", self.api("show proc; quit", "/run/haproxy-master.sock")).group(1))

    def config(self) -> str:
        return self.lab.read_file(NODE, "/etc/haproxy/haproxy.cfg")

    def curl(self, *args: str, node: str = "lb2") -> str:
        return self.lab.exec(node, ["curl", "-s", "-m", "5", *args], check=False).stdout

    def status(self, backend: str, server: str, want: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rows = [line.split(",") for line in self.api("show stat -1 4 -1").splitlines()[1:]]
            now = {r[1]: r[17] for r in rows if len(r) > 17 and r[0] == backend}
            if now.get(server, "").startswith(want):
                return
            assert time.monotonic() < deadline, f"{backend}/{server} is {now.get(server)}, not {want}"
            time.sleep(0.2)

    def certificate(self, path: str, cn: str, days: int = 30) -> str:
        """A self-signed certificate and key at `path` in lb1; its SHA-1 fingerprint."""
        self.lab.exec(NODE, ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                             "-addext", f"subjectAltName=DNS:{cn}", "-days", str(days), "-keyout", "/tmp/k.pem",
                             "-out", "/tmp/c.pem"])
        self.lab.exec(NODE, ["sh", "-c", f"mkdir -p {Path(path).parent} && cat /tmp/c.pem /tmp/k.pem > {path}.new "
                                         f"&& chmod 600 {path}.new && mv {path}.new {path}"])
        out = self.lab.exec(NODE, ["openssl", "x509", "-noout", "-fingerprint", "-sha1", "-in", "/tmp/c.pem"]).stdout
        return out.strip().split("=", 1)[1].replace(":", "")


def servers(lab: Lab, node: str, *specs: str) -> subprocess.Popen:
    p = lab.popen(node, ["/usr/bin/python3", str(FIXTURES / "http_server.py"), *specs], stdout=subprocess.PIPE,
                  text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=2, domain_controller=True, prefix="hl") as lab:
        procs = [servers(lab, "lb1", "tcp1=127.0.0.1:18301", "check=127.0.0.1:18302", "lb1app=192.0.2.11:18401",
                         "local6=[2001:db8::11]:18501", "a1=127.0.0.1:18601", "b1=127.0.0.1:18602"),
                 servers(lab, "lb2", "lb2app=192.0.2.12:18401", "v6a=[2001:db8::12]:18501",
                         "v6b=[2001:db8::12]:18502")]
        try:
            yield lab
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)


@pytest.fixture
def lb(lab: Lab) -> Iterator[LB]:
    """lb1 without HAProxy, keepalived, their files or reconcile's state."""
    yield LB(lab)
    for pidfile in ("/run/haproxy.pid", "/run/keepalived.pid"):
        pid = lab.exec(NODE, ["cat", pidfile], check=False).stdout.strip()
        if pid.isdigit():
            lab.exec(NODE, ["kill", pid], check=False)
            lab.exec(NODE, ["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.05; done"], timeout=30)
    lab.exec(NODE, ["ip", "addr", "del", "192.0.2.100/24", "dev", "eth0"], check=False)
    lab.exec(NODE, ["rm", "-rf", "/etc/haproxy/haproxy.cfg", "/etc/haproxy/reconcile", "/etc/haproxy/maps", "/etc/haproxy/acl",
                    "/etc/haproxy/haproxy.cfg.before-reconcile", "/var/lib/haproxy/server-state",
                    "/etc/keepalived/keepalived.conf", "/var/lib/reconcile", "/run/haproxy.pid",
                    "/etc/reconcile/policy.yaml"], check=False)


# --- TLS on a floating address ---------------------------------------------------------------

VIP = """\
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {name: web-vip}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  interface: eth0
  keepalived:
    routerId: 61
    priority: {lb1: 150, lb2: 100}
"""
TLS = """\
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: www_tls}
spec:
  node: lb1
  defaults: web
  bind:
    - address: 192.0.2.100
      port: 8443
      tls: {certificate: {file: /etc/reconcile/secrets/www.pem}, alpn: [h2, http/1.1]}
  defaultBackend: app
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  node: lb1
  defaults: web
  healthCheck: {type: http, interval: 500ms}
  servers:
    - {name: a1, address: 127.0.0.1, port: 18601}
    - {name: b1, address: 127.0.0.1, port: 18602}
"""


def test_tls_on_a_vip_serves_h2_and_http1_and_a_certificate_is_replaced_without_reload_or_failure(lb: LB) -> None:
    first = lb.certificate("/etc/reconcile/secrets/www.pem", "www.example.test")
    tree = lb.tree(VIP, TLS)
    lb.apply(tree)
    deadline = time.monotonic() + 20
    while "192.0.2.100/24" not in lb.lab.exec(NODE, ["ip", "-br", "addr"]).stdout:
        assert time.monotonic() < deadline, "keepalived did not take the VIP"
        time.sleep(0.1)
    lb.status("app", "a1", "UP")
    assert lb.curl("-k", "--http2", "-o", "/dev/null", "-w", "%{http_version}", "https://192.0.2.100:8443/") == "2"
    assert lb.curl("-k", "--http1.1", "-o", "/dev/null", "-w", "%{http_version}",
                   "https://192.0.2.100:8443/") == "1.1"
    assert oct(int(lb.lab.exec(NODE, ["stat", "-c", "%a", "/etc/haproxy/reconcile/frontend-www_tls/www.pem"])
                   .stdout, 8)) == "0o600"
    reloads = lb.reloads()
    load = [lb.lab.popen("lb2", ["/usr/bin/python3", CLIENT, "load", "https://192.0.2.100:8443/", "8", "3", *ka,
                                 "--ready", f"/tmp/tls-load-{i}"], stdout=subprocess.PIPE, text=True)
            for i, ka in enumerate(([], ["--keepalive"]))]
    # both clients have been served with the first certificate (a busy machine takes seconds to start them)
    deadline = time.monotonic() + 30
    while lb.lab.exec("lb2", ["sh", "-c", "test -e /tmp/tls-load-0 && test -e /tmp/tls-load-1"],
                      check=False).returncode:
        assert time.monotonic() < deadline, "the load clients did not start"
        time.sleep(0.1)
    second = lb.certificate("/etc/reconcile/secrets/www.pem", "www2.example.test", days=90)
    plan = lb.reconcile("--dry-run", "--repo", str(tree), rc=2).stdout
    assert "subject CN=www2.example.test, names www2.example.test, expires" in plan
    assert "runtime API, no reload" in plan and "PRIVATE KEY" not in plan
    lb.apply(tree)
    results = [json.loads(p.communicate(timeout=60)[0]) for p in load]
    assert lb.reloads() == reloads, "a certificate change must not reload"
    for result in results:
        # (few on a busy machine: each request of the first client is a new TLS handshake)
        assert result["errors"] == 0 and result["non2xx"] == 0 and result["requests"] >= 10, result
    assert {first, second} <= set(results[0]["certificates"]), results[0]["certificates"]  # new handshakes
    served = lb.lab.exec("lb2", ["sh", "-c", "echo | openssl s_client -connect 192.0.2.100:8443 2>/dev/null | "
                                             "openssl x509 -noout -subject"]).stdout
    assert "www2.example.test" in served
    lb.reconcile("--dry-run", "--repo", str(tree), rc=0)


# --- health checks, host names, IPv6 ---------------------------------------------------------

TCP = """\
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: pg}
spec:
  node: lb1
  mode: tcp
  bind: [{address: 127.0.0.1, port: 8302}]
  defaultBackend: pg_primary
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: pg_primary}
spec:
  node: lb1
  mode: tcp
  healthCheck: {type: http, method: OPTIONS, path: /primary, port: 18302, interval: 500ms, rise: 1}
  servers:
    - {name: pg1, address: 127.0.0.1, port: 18301}
---
# the same pattern as operators write it in haproxy.cfg (Patroni), with a dead check port
apiVersion: reconcile/v1
kind: Backend
metadata: {name: pg_replica}
spec:
  node: lb1
  directives:
    - mode tcp
    - option httpchk OPTIONS /replica
    - http-check expect status 200
    - default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
    - server pg2 127.0.0.1:18301 check port 18399
"""


def test_a_tcp_backend_is_checked_over_http_on_another_port(lb: LB) -> None:
    lb.apply(lb.tree(TCP))
    lb.status("pg_primary", "pg1", "UP")  # the check port answers HTTP
    lb.status("pg_replica", "pg2", "DOWN")  # its check port does not, although 18301 serves
    answer = lb.lab.exec(NODE, ["python3", "-c", "import socket; s = socket.create_connection(('127.0.0.1', 8302), 5);"
                                "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(1000).decode())"]).stdout
    assert "X-Server: tcp1" in answer  # TCP passes through to the traffic port


def dns(lab: Lab, action: str, address: str, old: str = "") -> None:
    argv = ["samba-tool", "dns", action, "127.0.0.1", DOMAIN, "app", "A", *([old] if old else []), address,
            "-U", f"{ADMIN_USER}%{ADMIN_PASSWORD}"]
    lab.exec(DC_NODE, argv, timeout=60)


BY_NAME = """\
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: byname}
spec:
  node: lb1
  bind: [{address: 127.0.0.1, port: 8401}]
  defaultBackend: app_by_name
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app_by_name}
spec:
  node: lb1
  healthCheck: {type: none}
  servers:
    - {name: app1, host: app.corp.example.test, port: 18401, resolvers: dc}
"""


def test_servers_by_host_name_follow_the_dcs_dns_through_a_resolvers_section(lb: LB) -> None:
    dns(lb.lab, "add", "192.0.2.12")
    try:
        tree = lb.tree(BY_NAME)
        lb.apply(tree)
        deadline = time.monotonic() + 20
        while lb.curl("http://127.0.0.1:8401/", node=NODE).strip() != "lb2app":
            assert time.monotonic() < deadline, "HAProxy did not resolve app.corp.example.test"
            time.sleep(0.2)
        reloads = lb.reloads()
        dns(lb.lab, "update", "192.0.2.11", old="192.0.2.12")  # the service moves
        deadline = time.monotonic() + 20
        while lb.curl("http://127.0.0.1:8401/", node=NODE).strip() != "lb1app":
            assert time.monotonic() < deadline, "HAProxy did not follow the DNS change"
            time.sleep(0.2)
        assert lb.reloads() == reloads
        lb.reconcile("--dry-run", "--repo", str(tree), rc=0)  # a resolved address is not drift
    finally:
        lb.lab.exec(DC_NODE, ["samba-tool", "dns", "delete", "127.0.0.1", DOMAIN, "app", "A", "192.0.2.11",
                              "-U", f"{ADMIN_USER}%{ADMIN_PASSWORD}"], check=False, timeout=60)


def ipv6(address: str) -> str:
    return doc(f"""\
        apiVersion: reconcile/v1
        kind: Frontend
        metadata: {{name: v6}}
        spec:
          node: lb1
          bind: [{{address: "::", port: 8480}}]
          defaultBackend: v6
        ---
        apiVersion: reconcile/v1
        kind: Backend
        metadata: {{name: v6}}
        spec:
          node: lb1
          healthCheck: {{type: http, interval: 500ms}}
          servers:
            - {{name: v6a, address: "{address}", port: 18501}}
          directives:
            - server v6b [2001:db8::12]:18502 check inter 500ms
        """)


def test_ipv6_binds_and_servers_and_a_server_moved_at_run_time(lb: LB) -> None:
    lb.apply(lb.tree(ipv6("2001:db8::12")))
    lb.status("v6", "v6a", "UP")
    lb.status("v6", "v6b", "UP")
    seen = {lb.curl("-6", "http://[2001:db8::11]:8480/").strip() for _ in range(6)}
    assert seen == {"v6a", "v6b"}
    reloads = lb.reloads()
    moved = lb.tree(ipv6("2001:db8::11"))
    assert "set server v6/v6a addr 2001:db8::11 port 18501" in lb.reconcile("--dry-run", "--repo", str(moved),
                                                                              rc=2).stdout
    lb.apply(moved)
    assert lb.reloads() == reloads
    lb.status("v6", "v6a", "UP")
    seen = {lb.curl("-6", "http://[2001:db8::11]:8480/").strip() for _ in range(6)}
    assert seen == {"local6", "v6b"}
    lb.reconcile("--dry-run", "--repo", str(moved), rc=0)


# --- logs, the stats page, maps ----------------------------------------------------------------

STATS = """\
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: admin}
spec:
  node: lb1
  defaults: web
  bind: [{address: 127.0.0.1, port: 8404}]
  stats:
    uri: /stats
    refresh: 10s
    auth: [{user: ops, password: {file: /etc/reconcile/secrets/stats.password}}]
  defaultBackend: app
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: app}
spec:
  node: lb1
  defaults: web
  servers:
    - {name: a1, address: 127.0.0.1, port: 18601}
"""


def test_stats_behind_a_password_from_a_secret_file_and_logs_without_syslog(lb: LB) -> None:
    lb.lab.write_file(NODE, "/etc/reconcile/secrets/stats.password", STATS_PASSWORD + "\n", mode=0o600)
    tree = lb.tree(STATS)
    plan = lb.reconcile("--dry-run", "--repo", str(tree), "-o", "json", rc=2).stdout
    lb.apply(tree)
    assert lb.curl("-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8404/stats", node=NODE) == "401"
    assert lb.curl("-u", f"ops:{STATS_PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                   "http://127.0.0.1:8404/stats", node=NODE) == "200"
    assert lb.curl("http://127.0.0.1:8404/", node=NODE).strip() == "a1"
    assert not lb.lab.exec(NODE, ["test", "-e", "/dev/log"], check=False).returncode == 0  # no syslog here
    events = lb.api("show events reconcile-log")
    assert re.search(r"admin admin/<STATS> \S+ 200 .*\"GET /stats HTTP/1.1\"", events), events
    assert re.search(r"admin app/a1 \S+ 200 .*\"GET / HTTP/1.1\"", events), events
    # the password is in the installed file (0600) and nowhere reconcile reports
    assert lb.lab.exec(NODE, ["stat", "-c", "%a", "/etc/haproxy/haproxy.cfg"]).stdout.strip() == "600"
    again = lb.reconcile("--dry-run", "--repo", str(tree), "-o", "json", rc=0).stdout
    leaks = lb.lab.exec(NODE, ["grep", "-rlF", STATS_PASSWORD.split()[0] + " pass", "/var/lib/reconcile"],
                        check=False).stdout
    assert STATS_PASSWORD not in plan + again and leaks.strip() in ("", "/var/lib/reconcile/haproxy/haproxy.cfg.written")
    assert "<secret file:/etc/reconcile/secrets/stats.password>" in again or "in-sync" in again


MAPS = """\
apiVersion: reconcile/v1
kind: Frontend
metadata: {name: routed}
spec:
  node: lb1
  defaults: web
  bind: [{address: 127.0.0.1, port: 8405}]
  directives:
    - http-request deny if !{ src -f /etc/haproxy/acl/clients.acl }
    - use_backend %[req.hdr(host),field(1,:),lower,map(/etc/haproxy/maps/hosts.map,to_a)]
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: to_a}
spec:
  node: lb1
  defaults: web
  servers: [{name: a1, address: 127.0.0.1, port: 18601}]
---
apiVersion: reconcile/v1
kind: Backend
metadata: {name: to_b}
spec:
  node: lb1
  defaults: web
  servers: [{name: b1, address: 127.0.0.1, port: 18602}]
"""


def test_a_map_and_an_acl_file_change_at_run_time_without_a_reload(lb: LB) -> None:
    def tree(target: str, clients: str = "[127.0.0.1, 192.0.2.12]") -> Path:
        haproxy = HAPROXY + f"  maps:\n    hosts: {{shop.example.test: {target}}}\n  acls:\n    clients: {clients}\n"
        path = lb.tree(MAPS)
        (path / "haproxy.yaml").write_text("---\n".join([CLUSTER, haproxy, MAPS]))
        return path

    lb.apply(tree("to_a"))
    assert lb.curl("-H", "Host: shop.example.test", "http://127.0.0.1:8405/", node=NODE).strip() == "a1"
    reloads = lb.reloads()
    changed = tree("to_b")
    assert "maps./etc/haproxy/maps/hosts.map" in lb.reconcile("--dry-run", "--repo", str(changed), rc=2).stdout
    lb.apply(changed)
    assert lb.reloads() == reloads
    assert lb.curl("-H", "Host: shop.example.test", "http://127.0.0.1:8405/", node=NODE).strip() == "b1"
    assert lb.lab.read_file(NODE, "/etc/haproxy/maps/hosts.map") == "shop.example.test to_b\n"
    lb.reconcile("--dry-run", "--repo", str(changed), rc=0)
    closed = tree("to_b", clients="[192.0.2.12]")  # this node's own address is no client any more
    lb.apply(closed)
    assert lb.reloads() == reloads
    assert lb.curl("-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8405/", node=NODE) == "403"
    assert lb.lab.read_file(NODE, "/etc/haproxy/acl/clients.acl") == "192.0.2.12\n"
    lb.reconcile("--dry-run", "--repo", str(closed), rc=0)


# --- bad input -----------------------------------------------------------------------------------


def bad(lb: LB, text: str) -> str:
    """Apply a tree with `text` beside a good Frontend/Backend; what reconcile says."""
    path = lb.tree(STATS)
    (path / "bad.yaml").write_text(text)
    result = lb.reconcile("apply", "--repo", str(path), rc=1)
    return result.stdout + result.stderr


def test_bad_input_is_refused_with_file_line_and_field_and_nothing_is_installed(lb: LB) -> None:
    lb.lab.write_file(NODE, "/etc/reconcile/secrets/stats.password", STATS_PASSWORD + "\n", mode=0o600)
    lb.apply(lb.tree(STATS))
    before, reloads = lb.config(), lb.reloads()
    proxy = "apiVersion: reconcile/v1\nkind: Backend\nmetadata: {name: bad}\nspec:\n  node: lb1\n  directives:\n"
    out = bad(lb, proxy + '    - "timeout server 5s\\nbackend evil"\n')
    assert "bad.yaml:7: spec.directives[0]: a directive is one line" in out
    out = bad(lb, proxy + "    - backend evil\n")
    assert "bad.yaml:7: spec.directives[0]: 'backend' starts a new section" in out
    out = bad(lb, proxy.replace("kind: Backend", "kind: Frontend") + "    - stats auth admin:Hunter2secret\n")
    assert "bad.yaml:7: spec.directives[0]: `stats auth` holds a password written inline" in out
    assert "Hunter2secret" not in out
    out = bad(lb, proxy + "    - option external-check\n    - external-check command /bin/true\n")
    assert re.search(r"bad.yaml:7: spec.directives\[0\]: `option external-check` runs a program as a health check; "
                     r"refused: this node's policy \(/etc/reconcile/policy.yaml \(absent\)\) does not allow haproxy "
                     r"capability 'external-check'", out), out
    tls = ("apiVersion: reconcile/v1\nkind: Frontend\nmetadata: {name: bad}\nspec:\n  node: lb1\n  defaults: web\n"
           "  bind:\n    - {address: 127.0.0.1, port: 8406, tls: {certificate: {file: /etc/reconcile/secrets/nope.pem}}}\n"
           "  defaultBackend: app\n")
    out = bad(lb, tls)
    assert "bad.yaml:8: spec.bind[0].tls.certificate: /etc/reconcile/secrets/nope.pem does not exist on node lb1" in out
    assert lb.config() == before and lb.reloads() == reloads
    # the node's administrator allows it: the same directive lands
    lb.lab.write_file(NODE, "/etc/reconcile/policy.yaml", "haproxy:\n  allow: [external-check, insecure-fork]\n")
    allowed = lb.tree(STATS)
    (allowed / "ok.yaml").write_text(proxy + "    - option external-check\n    - external-check command /bin/true\n"
                                     "    - server x 127.0.0.1:18601 check\n")
    haproxy = (allowed / "haproxy.yaml").read_text().replace("    - ssl-default-bind-options",
                                                             "    - insecure-fork-wanted\n    - external-check\n"
                                                             "    - ssl-default-bind-options")
    (allowed / "haproxy.yaml").write_text(haproxy)
    lb.apply(allowed)
    assert "external-check command /bin/true" in lb.config()


# --- adopting a running HAProxy ------------------------------------------------------------------

HAND_MADE = """\
# written by hand, years ago
global
\tmaxconn 500
\tstats socket /run/haproxy/admin.sock mode 660 level admin
\tlog ring@hand local0

ring hand
\tsize 65536

defaults
\tmode http
\ttimeout connect 5s
\ttimeout client 30s
\ttimeout server 30s

listen stats
\tbind 127.0.0.1:8409
\tstats enable
\tstats uri /
\tstats auth admin:Adm1n.pw   # to be moved to a secret file by the import

defaults tcp_side
\tmode tcp
\ttimeout connect 5s
\ttimeout client 1m
\ttimeout server 1m

frontend web
\tbind 127.0.0.1:8408
\thttp-request set-header X-Via lb1
\tdefault_backend Web.1

backend Web.1 from tcp_side
\tmode http
\tbalance roundrobin
\tserver a1 127.0.0.1:18601 check inter 1s
\tserver b1 127.0.0.1:18602 check inter 1s
"""


def test_a_running_haproxy_reconcile_did_not_write_is_imported_and_taken_over(lb: LB) -> None:
    lb.lab.write_file(NODE, "/etc/haproxy/haproxy.cfg", HAND_MADE)
    lb.lab.exec(NODE, ["mkdir", "-p", "/run/haproxy"])
    lb.lab.exec(NODE, ["haproxy", "-W", "-D", "-S", "/run/haproxy-master.sock", "-p", "/run/haproxy.pid", "-f",
                       "/etc/haproxy/haproxy.cfg"])
    repo = lb.lab.shared / f"imported{next(TREES)}"
    result = lb.reconcile("import", "haproxy", "--live", "--node", "lb1", "--output-dir", str(repo))
    assert "the password moved to /etc/reconcile/secrets/haproxy/stats-auth-listen-stats-admin (0600)" in result.stderr
    manifests = (repo / "haproxy.yaml").read_text()
    assert "Adm1n.pw" not in manifests and "((secret))" in manifests
    (repo / "cluster.yaml").write_text(CLUSTER)
    plan = lb.reconcile("--dry-run", "--repo", str(repo), rc=2).stdout
    assert "takes over /etc/haproxy/haproxy.cfg, which the manifests were imported from" in plan
    lb.apply(repo)
    config = lb.config()
    for line in HAND_MADE.splitlines():  # every directive of the original, as written
        directive = line.split("#")[0].strip()
        if directive:
            assert directive.replace("\t", " ") in config.replace("\t", " "), directive
    assert lb.lab.exec(NODE, ["test", "-f", "/etc/haproxy/haproxy.cfg.before-reconcile"], check=False).returncode == 0
    assert lb.curl("http://127.0.0.1:8408/", node=NODE).strip() in ("a1", "b1")
    assert lb.curl("-u", "admin:Adm1n.pw", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8409/",
                   node=NODE) == "200"
    lb.reconcile("--dry-run", "--repo", str(repo), rc=0)
