"""keepalived as operators write it, on real keepalived in three lab nodes (issue 14).

One lab for the module (lb1..lb3, 192.0.2.11-13). Every test writes its manifests and
converges the nodes it uses; an autouse fixture converges an empty tree afterwards (so
the next test starts from nothing) and ends what the test started by hand. Each node's
policy (/etc/reconcile/policy.yaml, the node owner's file) allows scripts and notify
scripts, except where a test takes it away.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from controller.lab import Lab, temporary_lab

pytestmark = pytest.mark.lab
NODES = ("lb1", "lb2", "lb3")
CONFIG = "/etc/keepalived/keepalived.conf"
POLICY = "keepalived:\n  allow: [scripts, notify]\n"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CLUSTER = """\
apiVersion: reconcile/v1
kind: Cluster
metadata: {name: web}
spec:
  stack: none
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
    - {name: lb3, id: 3, address: 192.0.2.13/24}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=3, prefix="kv") as lab:
        for node in NODES:
            lab.write_file(node, "/etc/reconcile/policy.yaml", POLICY)
        yield lab


class Repo:
    """Manifests in the lab's shared folder, and reconcile run on them inside nodes."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.root = lab.shared / "repo"
        self.root.mkdir(exist_ok=True)
        self.started: list[tuple[str, list[str]]] = []  # (node, pkill -f pattern) to end afterwards

    def write(self, *docs: str) -> Path:
        (self.root / "cluster.yaml").write_text(CLUSTER)
        (self.root / "vips.yaml").write_text("".join("---\n" + d for d in docs))
        return self.root

    def apply(self, node: str, check: bool = True) -> tuple[int, dict, str]:
        r = self.lab.exec(node, ["reconcile", "apply", "--allow-mass-prune", "--repo", str(self.root), "-o", "json"],
                          check=False, timeout=120)
        try:
            record = json.loads(r.stdout)
        except ValueError:
            record = {}
        if check:
            assert r.returncode == 0, f"{node}: apply exited {r.returncode}: {r.stdout}\n{r.stderr}"
        return r.returncode, record, r.stderr

    def converge(self, *nodes: str) -> None:
        for node in nodes:
            self.apply(node)


@pytest.fixture
def repo(lab: Lab) -> Iterator[Repo]:
    r = Repo(lab)
    yield r
    for node, pattern in r.started:
        lab.exec(node, ["pkill", "-f", pattern], check=False)
    r.write()
    for node in NODES:
        r.apply(node, check=False)
        lab.exec(node, ["sh", "-c", "pkill -x keepalived; rm -f /etc/keepalived/keepalived.conf "
                        "/var/lib/reconcile/keepalived/drain; true"], check=False)
        lab.write_file(node, "/etc/reconcile/policy.yaml", POLICY)
    time.sleep(0.5)


def vip(name: str, addresses: list[str], router_id: int, nodes: str = "[lb1, lb2]",
        priority: str = "{lb1: 150, lb2: 100, lb3: 50}", **keepalived: str) -> str:
    prios = {n: p for n, p in (kv.split(": ") for kv in priority.strip("{}").split(", ")) if n in nodes}
    extra = "".join(f"    {k}: {v}\n" for k, v in keepalived.items())
    addrs = "".join(f"    - {{address: '{a}'}}\n" for a in addresses)
    return (f"apiVersion: reconcile/v1\nkind: VirtualIP\nmetadata: {{name: {name}}}\nspec:\n  nodes: {nodes}\n"
            f"  manager: keepalived\n  addresses:\n{addrs}  keepalived:\n    routerId: {router_id}\n"
            f"    priority: {{{', '.join(f'{n}: {p}' for n, p in prios.items())}}}\n{extra}")


def holders(lab: Lab, ip: str, nodes=NODES) -> set[str]:
    out = set()
    for node in nodes:
        r = subprocess.run(["ip", "-n", lab.netns(node), "-j", "addr", "show", "dev", "eth0"],
                           capture_output=True, text=True, check=True)
        if any(a.get("local") == ip for link in json.loads(r.stdout) for a in link.get("addr_info", [])):
            out.add(node)
    return out


def wait_for(what: Callable[[], object], timeout: float, step: float = 0.01) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def wait_holders(lab: Lab, ip: str, expected: set[str], timeout: float = 10.0) -> float:
    """Seconds until exactly `expected` hold `ip` (fails the test after `timeout`)."""
    started = time.monotonic()
    assert wait_for(lambda: holders(lab, ip) == expected, timeout), \
        f"{ip} is held by {holders(lab, ip) or 'nobody'}, expected {expected}"
    return time.monotonic() - started


def stays(lab: Lab, ip: str, expected: set[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert holders(lab, ip) == expected, f"{ip} moved to {holders(lab, ip)}; expected it to stay on {expected}"
        time.sleep(0.1)


def pids(lab: Lab, node: str) -> tuple[int, int]:
    text = lab.exec(node, ["cat", "/run/keepalived.pid", "/run/keepalived_vrrp.pid"]).stdout.split()
    return int(text[0]), int(text[1])


def shipped(name: str, content: str) -> str:
    indented = "".join(f"        {line}\n" for line in content.splitlines())
    return f"  - path: {name}\n    mode: 0755\n    content: |\n{indented}"


# --- a mixed fleet during adoption -----------------------------------------------------------

# Written by hand after the MHA pair of the corpus (a MySQL VIP: VRRPv2, multicast, PASS
# authentication, nopreempt with an argument, e-mail fields), moved onto the lab's network.
HAND = """\
! keepalived for the MySQL VIP, maintained by hand
global_defs {
   notification_email {
      dba@example.test
   }
   notification_email_from root
   smtp_server 127.0.0.1
   smtp_connect_timeout 30
   router_id MYSQL_HA
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    nopreempt 1
    authentication {
        auth_type PASS
        auth_pass 1234
    }
    virtual_ipaddress {
        192.0.2.131
    }
}
"""
MYSQL_VIP = "192.0.2.131"


def running(lab: Lab, node: str) -> bool:
    return lab.exec(node, ["pgrep", "-x", "keepalived"], check=False).returncode == 0


def start_by_hand(lab: Lab, node: str) -> None:
    assert wait_for(lambda: not running(lab, node), 10), f"keepalived on {node} did not stop"
    lab.exec(node, ["keepalived", "--use-file", CONFIG, "--pid", "/run/keepalived.pid",
                    "--vrrp_pid", "/run/keepalived_vrrp.pid", "--checkers_pid", "/run/keepalived_checkers.pid"])
    assert wait_for(lambda: running(lab, node), 10), f"keepalived on {node} did not start"


def test_vrrp2_with_a_password_interoperates_with_a_hand_configured_keepalived(lab, repo):
    # lb2 keeps its hand-written keepalived; lb1 is adopted: its file imported, then applied.
    lab.write_file("lb2", CONFIG, HAND)
    start_by_hand(lab, "lb2")
    repo.started.append(("lb2", "keepalived --use-file"))
    wait_holders(lab, MYSQL_VIP, {"lb2"}, timeout=10)
    (lab.shared / "hand.conf").write_text(HAND)
    out = lab.shared / "imported"
    r = lab.exec("lb1", ["reconcile", "import", "keepalived", str(lab.shared / "hand.conf"), "--node", "lb1",
                         "--output-dir", str(out)])
    assert "keepalived.yaml: 2 manifests" in r.stdout, r.stdout + r.stderr
    manifests = (out / "keepalived.yaml").read_text()
    assert "1234" not in manifests and "file: /etc/reconcile/secrets/keepalived/VI_1.auth_pass" in manifests
    # the password went to the node's secrets folder, 0600 (the default --secrets-dir)
    assert lab.exec("lb1", ["stat", "-c", "%a", "/etc/reconcile/secrets/keepalived/VI_1.auth_pass"]).stdout == "600\n"
    (repo.root / "cluster.yaml").write_text(CLUSTER)
    (repo.root / "vips.yaml").write_text(manifests.replace("lb1: 100", "lb1: 150"))
    repo.apply("lb1")
    rendered = lab.read_file("lb1", CONFIG)
    assert "version 2" in rendered and "auth_type PASS" in rendered and "nopreempt" in rendered
    # lb1 (150) hears lb2's authenticated adverts and, nopreempt, leaves the VIP there.
    stays(lab, MYSQL_VIP, {"lb2"}, 4.0)
    lab.exec("lb2", ["pkill", "-TERM", "-x", "keepalived"])
    moved = wait_holders(lab, MYSQL_VIP, {"lb1"}, timeout=5)
    print(f"\nmixed fleet: hand-run lb2 stopped, VIP on reconcile's lb1 after {moved:.2f}s")
    start_by_hand(lab, "lb2")
    stays(lab, MYSQL_VIP, {"lb1"}, 4.0)  # lb2 accepts lb1's adverts: the same password, in reconcile's file
    # The password really is checked: a wrong one on lb1 and each side ignores the other.
    lab.write_file("lb1", "/etc/reconcile/secrets/keepalived/VI_1.auth_pass", "0000\n", mode=0o600)
    _, record, _ = repo.apply("lb1")
    [obj] = [o for o in record["objects"] if o["name"] == "VI_1"]
    assert obj["status"] == "drift-corrected" or obj["status"] == "changed", obj
    assert "0000" not in json.dumps(record), "a password never shows in a plan"
    wait_holders(lab, MYSQL_VIP, {"lb1", "lb2"}, timeout=8)


# --- IPv6 ----------------------------------------------------------------------------------------


def test_an_ipv6_vip_fails_over(lab, repo):
    ip = "2001:db8::200"
    repo.write(vip("web6", [f"{ip}/64"], 60, nodes="[lb1, lb2, lb3]"))
    repo.converge(*NODES)
    wait_holders(lab, ip, {"lb1"})
    assert "vrrp_instance web6 {" in lab.read_file("lb1", CONFIG)
    _, vrrp = pids(lab, "lb1")
    lab.exec("lb1", ["kill", "-STOP", str(vrrp)])
    try:
        started = time.monotonic()
        assert wait_for(lambda: "lb2" in holders(lab, ip), 5.0)
        hung = time.monotonic() - started
    finally:
        lab.exec("lb1", ["kill", "-CONT", str(vrrp)])
    wait_holders(lab, ip, {"lb1"}, timeout=5)
    started = time.monotonic()
    lab.exec("lb1", ["pkill", "-TERM", "-x", "keepalived"])
    assert wait_for(lambda: "lb2" in holders(lab, ip), 5.0)
    stopped = time.monotonic() - started
    # Timings are printed, not asserted (bench/bench_keepalived.py measures them).
    print(f"\nIPv6 VIP (VRRPv3, advert 0.25 s, 3 nodes): master hung → lb2 in {hung:.2f}s; "
          f"master stopped → lb2 in {stopped:.2f}s")
    assert holders(lab, ip) == {"lb2"}, "the lower-priority lb3 stays BACKUP"


# --- programs the operator ships ----------------------------------------------------------------

CHECK = "#!/bin/sh\n# the operator's check: the application is up while its flag file exists\ntest -e /run/app-ok\n"
NOTIFY = "#!/bin/sh\necho \"$*\" >> /run/notify.log\n"


def settings(*parts: str, nodes: str = "[lb1, lb2]") -> str:
    return (f"apiVersion: reconcile/v1\nkind: Keepalived\nmetadata: {{name: web}}\nspec:\n  nodes: {nodes}\n"
            "  globalDefs: {scriptUser: root}\n" + "".join(parts))


def test_an_operator_check_moves_the_vip_when_it_fails(lab, repo):
    ip = "192.0.2.140"
    for node in ("lb1", "lb2"):
        lab.exec(node, ["touch", "/run/app-ok"])
    repo.write(settings("  files:\n" + shipped("check-app.sh", CHECK),
                        "  scripts:\n    chk_app:\n      command: [/etc/keepalived/reconcile/check-app.sh]\n"
                        "      interval: 1\n      fall: 1\n      rise: 1\n      weight: -60\n"),
               vip("app", [f"{ip}/24"], 70, track="{scripts: [{name: chk_app}]}"))
    repo.converge("lb1", "lb2")
    assert lab.exec("lb1", ["stat", "-c", "%a %U", "/etc/keepalived/reconcile/check-app.sh"]).stdout.split() == \
        ["755", "root"]
    wait_holders(lab, ip, {"lb1"})
    lab.exec("lb1", ["rm", "/run/app-ok"])
    moved = wait_holders(lab, ip, {"lb2"}, timeout=8)
    lab.exec("lb1", ["touch", "/run/app-ok"])
    back = wait_holders(lab, ip, {"lb1"}, timeout=8)
    print(f"\noperator's check failed on lb1: VIP on lb2 after {moved:.2f}s; back {back:.2f}s after it passed")
    # A later change of the VIP alone: keepalived -t checks it with the script installed before.
    (repo.root / "vips.yaml").write_text((repo.root / "vips.yaml").read_text().replace("lb1: 150", "lb1: 160"))
    _, record, _ = repo.apply("lb1")
    assert {o["name"]: o["status"] for o in record["objects"]} == {"web": "in-sync", "app": "changed"}


def test_notify_scripts_run_with_the_right_arguments(lab, repo):
    ip = "192.0.2.141"
    for node in ("lb1", "lb2"):
        lab.exec(node, ["rm", "-f", "/run/notify.log"])
    notify = ("{master: {command: [/etc/keepalived/reconcile/notify.sh, became, master node], user: root}, "
              "any: {command: [/etc/keepalived/reconcile/notify.sh, generic]}}")
    repo.write(settings("  files:\n" + shipped("notify.sh", NOTIFY)), vip("note", [f"{ip}/24"], 71, notify=notify))
    repo.converge("lb1", "lb2")
    wait_holders(lab, ip, {"lb1"})

    def log(node: str) -> list[str]:
        return lab.exec(node, ["sh", "-c", "cat /run/notify.log 2>/dev/null || true"]).stdout.splitlines()

    assert wait_for(lambda: "generic INSTANCE note MASTER 150" in log("lb1"), 5.0), log("lb1")
    assert "became master node" in log("lb1"), "argv kept word by word (one argument with a space)"
    assert wait_for(lambda: "generic INSTANCE note BACKUP 100" in log("lb2"), 5.0), log("lb2")
    lab.exec("lb1", ["pkill", "-TERM", "-x", "keepalived"])
    assert wait_for(lambda: "generic INSTANCE note MASTER 100" in log("lb2"), 5.0), log("lb2")
    assert "became master node" in log("lb2")


def test_a_sync_group_moves_two_vips_together(lab, repo):
    a, b = "192.0.2.150", "192.0.2.151"
    for node in ("lb1", "lb2"):
        lab.exec(node, ["touch", "/run/app-ok"])
    repo.write(settings("  files:\n" + shipped("check-app.sh", CHECK),
                        "  scripts:\n    chk_a: {command: [/etc/keepalived/reconcile/check-app.sh], interval: 1, "
                        "fall: 1, rise: 1}\n",
                        "  syncGroups:\n    pair: {instances: [vip-a, vip-b]}\n"),
               vip("vip-a", [f"{a}/24"], 80, track="{scripts: [{name: chk_a}]}"),  # only A runs the check
               vip("vip-b", [f"{b}/24"], 81))
    repo.converge("lb1", "lb2")
    wait_holders(lab, a, {"lb1"})
    wait_holders(lab, b, {"lb1"})
    lab.exec("lb1", ["rm", "/run/app-ok"])
    moved = wait_holders(lab, a, {"lb2"}, timeout=8)
    assert holders(lab, b) == {"lb2"}, "B has no failing check of its own: it moves because its group does"
    print(f"\nsync group: A's check failed on lb1, A and B on lb2 after {moved:.2f}s")


# --- drain -----------------------------------------------------------------------------------------

HAPROXY = """\
global
    pidfile /run/haproxy-drain.pid
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend web
    bind {vip}:8080 transparent
    default_backend local
backend local
    server app 127.0.0.1:9001
"""


def serve_on_vip(lab: Lab, repo, ip: str, router: int) -> None:
    """A VRRPv2 VIP (advert 1 s: master-down alone is 3.6 s) on lb1, HAProxy on it on lb1
    and lb2 in front of a local HTTP server each."""
    repo.write(vip("web", [f"{ip}/24"], router, version="2"))
    repo.converge("lb1", "lb2")
    wait_holders(lab, ip, {"lb1"})
    cfg = lab.shared / "haproxy-drain.cfg"
    cfg.write_text(HAPROXY.format(vip=ip))
    for node in ("lb1", "lb2"):
        server = lab.popen(node, ["python3", str(FIXTURES / "haproxy" / "http_server.py"), f"{node}=127.0.0.1:9001"])
        repo.started.append((node, "http_server.py"))
        assert server.poll() is None
        lab.exec(node, ["haproxy", "-D", "-f", str(cfg)])
        repo.started.append((node, "haproxy-drain.cfg"))
    lab.wait_tcp("lb3", ip, 8080)


def load_from_lb3(lab: Lab, ip: str, *flags: str) -> tuple[threading.Thread, dict]:
    """6 s of requests from lb3 through the VIP, 2 at a time; started, with its results."""
    results: dict = {}

    def load() -> None:
        r = lab.exec("lb3", ["python3", str(FIXTURES / "haproxy" / "http_client.py"), "load",
                             f"http://{ip}:8080/", "6", "2", *flags], timeout=60)
        results.update(json.loads(r.stdout))

    client = threading.Thread(target=load)
    client.start()
    time.sleep(2.0)
    return client, results


def test_drain_moves_the_vip_without_a_reload_or_a_failed_request(lab, repo):
    ip = "192.0.2.160"
    serve_on_vip(lab, repo, ip, 90)
    pid_before, mtime_before = pids(lab, "lb1"), lab.exec("lb1", ["stat", "-c", "%Y", CONFIG]).stdout
    client, results = load_from_lb3(lab, ip)
    record = lab.shared / "drain-record.json"
    r = lab.exec("lb1", ["reconcile", "drain", "lb1"], env={"RECONCILE_RECORD": str(record)})
    seconds = float(r.stdout.split(" taken over by a peer in ")[1].split("s")[0])
    assert holders(lab, ip) == {"lb2"}
    client.join()
    print(f"\ndrain: {r.stdout.strip()}; under load: {results}")
    # A VIP moves by ARP and VRRP carries no connection state: a connection lb1 accepted
    # whose next packet came after the switch would reach lb2 and be reset. The drain's gate
    # holds new connections back (the client resends its SYN, to lb2) while the open ones
    # finish, so not one request fails.
    assert results["errors"] == 0 and results["non2xx"] == 0 and results["ok"] > 50, results
    assert seconds < 1.0, r.stdout
    assert pids(lab, "lb1") == pid_before and lab.exec("lb1", ["stat", "-c", "%Y", CONFIG]).stdout == mtime_before
    changes = [(c["what"], " ".join(c["argv"])) for c in json.loads(record.read_text()) if not c["read_only"]]
    assert changes == [("exec", "nft -f -"), ("write", "/var/lib/reconcile/keepalived/drain"), ("exec", "nft -f -")], \
        "drain writes one file, gates and ungates new connections, and signals nothing"
    assert lab.exec("lb1", ["nft", "list", "table", "inet", "reconcile_drain"], check=False).returncode != 0
    plan = lab.exec("lb1", ["reconcile", "--dry-run", "--repo", str(repo.root)], check=False)
    assert plan.returncode == 0, "a drained node is in sync: drain is not drift"
    lab.exec("lb1", ["reconcile", "undrain"])
    wait_holders(lab, ip, {"lb1"}, timeout=8)


def test_keepalive_connections_outlasting_the_grace_are_counted_and_only_they_are_cut(lab, repo):
    # Each of the 2 clients keeps one connection and sends on it without pause: it never
    # ends by itself, so the grace runs out and the drain says how many it will cut.
    ip = "192.0.2.162"
    serve_on_vip(lab, repo, ip, 94)
    client, results = load_from_lb3(lab, ip, "--keepalive")
    r = lab.exec("lb1", ["reconcile", "drain", "--grace", "0.5"])
    client.join()
    print(f"\ndrain: {r.stdout.strip()}; under keep-alive load: {results}")
    held = float(r.stdout.split("new connections held ")[1].split("s")[0])
    assert 0.5 <= held < 1.0 and "2 still open after the grace were reset" in r.stdout, r.stdout
    assert holders(lab, ip) == {"lb2"}
    assert results["errors"] <= 2 and results["non2xx"] == 0 and results["ok"] > 50, results
    lab.exec("lb1", ["reconcile", "undrain"])
    wait_holders(lab, ip, {"lb1"}, timeout=8)


def test_draining_the_last_node_is_undone_at_once(lab, repo):
    ip = "192.0.2.161"
    repo.write(vip("solo", [f"{ip}/24"], 91, nodes="[lb1]"))
    repo.converge("lb1")
    wait_holders(lab, ip, {"lb1"})
    r = lab.exec("lb1", ["reconcile", "drain"], check=False)
    assert r.returncode == 1 and "no peer took over solo" in r.stderr and "at least once" in r.stderr
    # the gate that held new connections back is gone with the refused drain
    assert lab.exec("lb1", ["nft", "list", "table", "inet", "reconcile_drain"], check=False).returncode != 0
    wait_holders(lab, ip, {"lb1"}, timeout=5)


# --- bad input and refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("docs, field, message", [
    ([settings("  scripts:\n    chk: {command: 'pgrep haproxy || exit 1'}\n")],
     "spec.scripts.chk.command", "never a shell line"),
    ([settings("  files:\n  - path: /etc/cron.d/reconcile\n    content: \"#!/bin/sh\\nexit 0\\n\"\n")],
     "spec.files[0]", "outside the managed folder"),
    ([vip("pw", ["192.0.2.170/24"], 92, version="2", authentication="{type: PASS, password: '1234'}")],
     "spec.keepalived.authentication.password", "by reference only"),
    ([vip("both", ["192.0.2.171/24", "2001:db8::171/64"], 93), vip("six", ["2001:db8::172/64"], 93)],
     "spec.keepalived.routerId", "(IPv6) is already used by VirtualIP 'both'"),
], ids=["shell-line", "script-outside-folder", "inline-password", "router-id-across-families"])
def test_bad_input_names_file_line_and_field_and_installs_nothing(lab, repo, docs, field, message):
    repo.write(vip("ok", ["192.0.2.179/24"], 99))
    repo.converge("lb1")
    before = lab.read_file("lb1", CONFIG)
    repo.write(vip("ok", ["192.0.2.179/24"], 99), *docs)
    r = lab.exec("lb1", ["reconcile", "apply", "--repo", str(repo.root)], check=False)
    rc, stderr = r.returncode, r.stderr
    assert rc == 1 and "the tree is invalid, nothing was changed" in stderr
    lines = [line.strip() for line in stderr.splitlines() if f": {field}: " in line]
    assert lines and lines[0].startswith("vips.yaml:") and message in lines[0], stderr
    assert lines[0].split(":")[1].isdigit()
    assert "1234" not in stderr
    assert lab.read_file("lb1", CONFIG) == before


def test_programs_need_the_node_policy_and_the_rest_still_lands(lab, repo):
    lab.exec("lb3", ["rm", "/etc/reconcile/policy.yaml"])
    notify = "{master: {command: [/usr/bin/logger, up], user: root}}"
    repo.write(vip("noisy", ["192.0.2.180/24"], 94, nodes="[lb3]", notify=notify),
               vip("quiet", ["192.0.2.181/24"], 95, nodes="[lb3]"))
    rc, record, _ = repo.apply("lb3", check=False)
    by = {o["name"]: o for o in record["objects"]}
    assert rc == 1 and by["noisy"]["status"] == "failed" and by["quiet"]["status"] == "changed", by
    assert "spec.keepalived.notify.master: runs /usr/bin/logger" in by["noisy"]["error"]
    assert "does not allow keepalived capability 'notify'" in by["noisy"]["error"]
    text = lab.read_file("lb3", CONFIG)
    assert "vrrp_instance quiet" in text and "noisy" not in text and "logger" not in text
    wait_holders(lab, "192.0.2.181", {"lb3"})


def test_a_virtual_server_without_ipvs_in_the_kernel_is_refused_and_vrrp_keeps_running(lab, repo):
    server = ("apiVersion: reconcile/v1\nkind: VirtualServer\nmetadata: {name: dns}\nspec:\n  nodes: [lb3]\n"
              "  address: 192.0.2.182\n  port: 53\n  protocol: TCP\n  extra: [lb_algo wlc, lb_kind NAT]\n"
              "  realServers:\n    - address: 192.0.2.11\n      port: 53\n"
              "      checks: [{type: TCP_CHECK, extra: [connect_timeout 3]}]\n")
    repo.write(vip("lvs-vip", ["192.0.2.182/24"], 96, nodes="[lb3]"), server)
    ipvs = lab.exec("lb3", ["test", "-e", "/proc/net/ip_vs"], check=False).returncode == 0
    rc, record, _ = repo.apply("lb3", check=False)
    by = {o["name"]: o for o in record["objects"]}
    if ipvs:  # a kernel with IPVS: the service is configured and ipvsadm shows it
        assert rc == 0 and "192.0.2.182:53" in lab.exec("lb3", ["ipvsadm", "-Ln"]).stdout
        return
    assert rc == 1 and by["dns"]["status"] == "failed" and "no IPVS" in by["dns"]["error"]
    assert by["lvs-vip"]["status"] == "changed"
    wait_holders(lab, "192.0.2.182", {"lb3"})
    assert "virtual_server" not in lab.read_file("lb3", CONFIG)
