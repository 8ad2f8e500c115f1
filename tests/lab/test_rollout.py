"""Coordinated rollouts on real daemons: two agents (lb1, lb2) of a Corosync/Pacemaker
cluster follow one git repository; keepalived holds the VIP, HAProxy serves it, and a
client in lb3 (no member of the cluster) sends HTTP requests through the VIP all along,
a new connection each, no retries.

The story, in order, on one lab:
1. the cluster forms from the first commit (no turn: nothing to take down yet);
2. a wrong-but-valid commit (the backend port nothing listens on) reaches lb1 first, lb1
   drains, applies, fails its health gate, and the rollout halts: lb2 keeps serving the
   previous revision through the VIP, `reconcile status --cluster` names lb1 and why;
3. the fix commit (with a structural HAProxy change, so both nodes need a turn) rolls out
   lb1 then lb2, and the VIP ends on lb1 as its priority says;
4. the client saw no failed request, except at most the one in flight at an instant the
   VIP moved (its TCP connection was on the node the address left; counted, and printed
   with the figures); then a compare-and-set race, and kill -9 of an agent in its turn.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from controller.lab import COROSYNC_AUTHKEY_FILE, Lab, temporary_lab

pytestmark = pytest.mark.lab

VIP = "192.0.2.100"
GIT_ENV = {"GIT_AUTHOR_NAME": "Operator", "GIT_AUTHOR_EMAIL": "ops@example.test", "GIT_COMMITTER_NAME": "Operator",
           "GIT_COMMITTER_EMAIL": "ops@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}

def cluster_yaml(members: list[str], soak: str = "2s", on_failure: str = "halt", order: Any = "as listed",
                 max_unavailable: int = 1, probes: str = "[{type: http, port: 80, path: /}]",
                 gate_timeout: str = "12s") -> str:
    """The Cluster with its rollout policy; `order` None leaves it out (serving nodes go last)."""
    nodes = "".join(f"    - {{name: {n}, id: {i}, address: 192.0.2.1{i}/24}}\n" for i, n in enumerate(members, 1))
    quorum = "  quorum: {twoNode: true, waitForAll: true}\n" if len(members) == 2 else ""
    order = members if order == "as listed" else order
    order_line = f"    order: [{', '.join(order)}]\n" if order else ""
    return f"""\
apiVersion: reconcile/v1
kind: Cluster
metadata: {{name: web}}
spec:
  nodes:
{nodes}  authkey: {{file: {COROSYNC_AUTHKEY_FILE}}}
{quorum}  stonithEnabled: false
  properties: {{no-quorum-policy: stop, dc-deadtime: 5s}}
  rollout:
{order_line}    maxUnavailable: {max_unavailable}
    healthGate:
      timeout: {gate_timeout}
      probes: {probes}
    soak: {soak}
    onFailure: {on_failure}
    turnTimeout: 10s
"""


def web_yaml(members: list[str], port: int, forward: bool, balance: str = "roundrobin") -> str:
    priorities = ", ".join(f"{n}: {150 - 50 * i}" for i, n in enumerate(members))
    servers = "".join(f"    - {{name: s{i}, address: 192.0.2.1{i}, port: {port}}}\n" for i in range(1, len(members) + 1))
    return f"""\
apiVersion: reconcile/v1
kind: VirtualIP
metadata: {{name: web-vip}}
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  interface: eth0
  keepalived: {{routerId: 51, priority: {{{priorities}}}}}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {{name: app}}
spec:
  cluster: web
  balance: {balance}
  forwardFor: {str(forward).lower()}
  healthCheck: {{type: http, path: /, interval: 1s, rise: 1}}
  servers:
{servers}---
apiVersion: reconcile/v1
kind: Frontend
metadata: {{name: web}}
spec:
  cluster: web
  bind: [{{address: 0.0.0.0, port: 80}}]
  defaultBackend: app
"""


# The client in lb3: a new connection per request, no retries; one line per failure, and
# the counts when the stop file appears.
CLIENT = r"""
import json, os, sys, time, urllib.request
out, stop = sys.argv[1], sys.argv[2]
ok = failed = 0
failures = []
while not os.path.exists(stop):
    t = time.time()
    try:
        with urllib.request.urlopen("http://192.0.2.100/", timeout=2) as r:
            r.read()
            ok += r.status == 200
            if r.status != 200:
                failed += 1; failures.append([t, f"status {r.status}"])
    except Exception as err:
        failed += 1
        failures.append([t, str(err)[:120]])
    time.sleep(0.02)
    if (ok + failed) % 50 == 0:
        with open(out + ".tmp", "w") as f:
            json.dump({"ok": ok, "failed": failed, "failures": failures[-50:]}, f)
        os.replace(out + ".tmp", out)
with open(out, "w") as f:
    json.dump({"ok": ok, "failed": failed, "failures": failures}, f)
"""


# Runs in a node: one compare-and-set of the turn at the instant argv[3] (or, with
# "release", give the node's turn back).
RACE = r"""
import json, sys, time
from controller.rollout import decide, released
from reconcilers.base import Node, Runner
from reconcilers.pacemaker.rollout import PacemakerCoordinator
me, rev, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
coord = PacemakerCoordinator(Node(me, Runner(), "/tmp/race"), {}, ["lb1", "lb2"], {})
if sys.argv[4:] == ["release"]:
    coord.update_turn(lambda v: released(v["turn"], me))
    sys.exit(0)
policy = {"order": [me] + [n for n in ("lb1", "lb2") if n != me], "maxUnavailable": 1}
saw = []
def change(v):
    d = decide(policy, v, me, rev)
    saw.append(v["turn"]["holders"])
    return d.turn if d.go else None
time.sleep(max(0.0, at - time.time()))
turn = coord.update_turn(change)
print(json.dumps({"won": turn is not None, "conflicts": coord.conflicts, "sawHolder": any(saw)}))
"""


def wait_for(check: Callable[[], Any], timeout: float, what: str, show: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}" + (f"\n{show()}" if show else ""))


class Fleet:
    """The operator's repository, the two agents, the HTTP servers and the client."""

    def __init__(self, lab: Lab, members: list[str]):
        self.lab = lab
        self.members = members
        self.client = f"lb{len(members) + 1}"  # not a member: the client's node
        self.work = lab.shared / "work"
        self.origin = lab.shared / "origin.git"
        self.procs: dict[str, subprocess.Popen] = {}
        self.moves: list[tuple[float, str | None, str]] = []  # the VIP's moves while the client runs
        self.logs: dict[str, Path] = {}
        self.work.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.work, check=True, capture_output=True, text=True,
                              env={**os.environ, **GIT_ENV}).stdout.strip()

    def commit(self, port: int, forward: bool, message: str, soak: str = "2s", on_failure: str = "halt",
               balance: str = "roundrobin", **rollout: Any) -> str:
        """Commit and push the Cluster and the web tier; `rollout` goes to cluster_yaml."""
        (self.work / "cluster.yaml").write_text(cluster_yaml(self.members, soak, on_failure, **rollout))
        (self.work / "web.yaml").write_text(web_yaml(self.members, port, forward, balance))
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        if not self.origin.exists():
            subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.origin)], check=True,
                           capture_output=True, env={**os.environ, **GIT_ENV})
            self.git("remote", "add", "origin", str(self.origin))
        else:
            self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")

    def start(self, name: str, node: str, argv: list[str], quiet: bool = False) -> None:
        log = self.lab.shared / f"{name}.log"
        if not quiet:  # HTTP servers: their request logs would bury the agents'
            self.logs[name] = log
        with open(log, "a") as out:
            self.procs[name] = self.lab.popen(node, argv, stdout=out, stderr=subprocess.STDOUT)

    def start_agent(self, node: str) -> None:
        self.start(f"agent-{node}", node, ["reconcile", "agent", "--repo", str(self.origin), "--ref", "main",
                                           "--resync", "10m"])

    def at(self, node: str, sha: str) -> bool:
        a = self.agent(node)
        return a.get("revision") == sha and bool(a.get("ready"))

    def agent(self, node: str) -> dict[str, Any]:
        r = self.lab.exec(node, ["reconcile", "status", "-o", "json"], check=False)
        return (json.loads(r.stdout) if r.stdout.strip() else {}).get("agent") or {}

    def cluster(self, node: str = "lb2") -> dict[str, Any]:
        r = self.lab.exec(node, ["reconcile", "status", "--cluster", "-o", "json"], check=False)
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def cluster_in(self, state: str) -> dict[str, Any] | None:
        data = self.cluster()
        return data if data.get("state") == state else None

    def holder(self) -> str | None:
        for node in self.members:
            data = json.loads(self.lab.exec(node, ["ip", "-j", "addr", "show", "dev", "eth0"]).stdout)
            if any(a.get("local") == VIP for i in data for a in i.get("addr_info", [])):
                return node
        return None

    def client_counts(self) -> dict[str, Any]:
        path = self.lab.shared / "client.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def watch_vip(self) -> None:
        """Record every move of the VIP (time, from, to) until the client stops."""
        def run() -> None:
            last = self.holder()
            while not (self.lab.shared / "client.stop").exists():
                now = self.holder()
                if now != last and now is not None:
                    self.moves.append((time.time(), last, now))
                    last = now
                time.sleep(0.1)

        threading.Thread(target=run, name="vip-watch", daemon=True).start()

    def check_failures(self, figures: dict[str, Any], label: str, since: float = 0.0) -> None:
        """No failed request but, at most, the one in flight at an instant the VIP moved:
        the client is sequential, so a move can break at most one request (its TCP
        connection was on the node the address left); any other failure is a bug. Counts
        from `since` (time.time()) on."""
        seen = self.client_counts()
        counts = wait_for(lambda: (c := self.client_counts()) and c["ok"] + c["failed"] >= seen["ok"] + seen["failed"]
                          + 100 and c, 30, "the client's counts to cover this test") if "client" in self.procs else seen
        failures = [f for f in counts["failures"] if f[0] >= since]
        moves = [m for m in self.moves if m[0] >= since]
        figures[f"failed requests ({label})"] = len(failures)
        figures[f"VIP moves ({label})"] = len(moves)
        outside = [f for f in failures if not any(m - 2.5 <= f[0] <= m + 1.0 for m, _, _ in moves)]
        assert not outside, f"failed requests away from any VIP move: {outside}; moves: {moves}"
        assert len(failures) <= len(moves), (failures, moves)

    def stop_client(self) -> dict[str, Any]:
        (self.lab.shared / "client.stop").write_text("")
        self.procs.pop("client").wait(30)
        return self.client_counts()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
                os.kill(int(child), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill_hard(self, name: str) -> None:
        """SIGKILL the process itself (not nsenter): no cleanup, its heartbeat just stops."""
        proc = self.procs.pop(name)
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGKILL)
        proc.wait(20)

    def close(self) -> None:
        (self.lab.shared / "client.stop").write_text("")
        for name in list(self.procs):
            self.kill(name)

    def logs_text(self) -> str:
        return "\n".join(f"--- {n}\n{p.read_text()[-4000:]}" for n, p in self.logs.items() if p.exists())


@contextlib.contextmanager
def running_fleet(members: list[str], prefix: str) -> Iterator[Fleet]:
    """A lab of the members and a client node, an HTTP server on 8080 in each member."""
    with temporary_lab(nodes=len(members) + 1, prefix=prefix) as lab:
        f = Fleet(lab, members)
        try:
            for n in members:
                lab.exec(n, ["mkdir", "-p", "/var/www"])
                lab.write_file(n, "/var/www/index.html", f"{n}\n")
                f.start(f"http-{n}", n, ["/usr/bin/python3", "-m", "http.server", "8080", "--bind", lab.address(n),
                                         "--directory", "/var/www"], quiet=True)
            for n in members:
                lab.wait_tcp(n, lab.address(n), 8080)
            yield f
        finally:
            f.close()
            print(f.logs_text())  # shown when a test fails


@pytest.fixture(scope="module")
def fleet():
    with running_fleet(["lb1", "lb2"], "ro") as f:
        yield f


FIGURES: dict[str, Any] = {}


def bootstrap(fleet: Fleet, figures: dict[str, Any]) -> str:
    """The first commit on every member (no turns), the VIP answering, the client started."""
    first = fleet.commit(8080, False, "the web tier")
    started = time.monotonic()
    for n in fleet.members:
        fleet.start_agent(n)
    for n in fleet.members:
        wait_for(lambda n=n: fleet.at(n, first), 120, f"{n} to apply the first commit", fleet.logs_text)
    wait_for(lambda: fleet.holder() == "lb1", 30, "lb1 to hold the VIP")
    wait_for(lambda: fleet.lab.exec(fleet.client, ["python3", "-c", "import urllib.request;urllib.request.urlopen("
                                                   "'http://192.0.2.100/', timeout=2)"], check=False).returncode == 0,
             30, "the VIP to answer")
    figures["bootstrap"] = round(time.monotonic() - started, 1)

    # every agent published its revision; no rollout ran (nothing to take down at first)
    def published() -> dict[str, Any] | None:
        c = fleet.cluster()
        nodes = c.get("nodes", {})
        return c if nodes and all(i.get("revision") == first for i in nodes.values()) else None

    view = wait_for(published, 30, "every node to publish the first revision", lambda: json.dumps(fleet.cluster()))
    assert set(view["nodes"]) == set(fleet.members)
    fleet.start("client", fleet.client, ["python3", "-c", CLIENT, str(fleet.lab.shared / "client.json"),
                                         str(fleet.lab.shared / "client.stop")])
    wait_for(lambda: fleet.client_counts().get("ok", 0) >= 50, 30, "the client to get answers")
    fleet.watch_vip()
    return first


def test_the_first_commit_forms_the_cluster_and_serves_the_vip_without_turns(fleet):
    bootstrap(fleet, FIGURES)


def test_a_wrong_commit_halts_at_lb1_and_lb2_keeps_serving_the_old_revision(fleet):
    good = fleet.agent("lb2")["revision"]
    pushed = time.monotonic()
    wrong = fleet.commit(8099, False, "a backend port nothing listens on")
    data = wait_for(lambda: fleet.cluster_in("Stalled"), 90, "the rollout to halt", fleet.logs_text)
    FIGURES["time to halt"] = round(time.monotonic() - pushed, 1)
    assert data["failedNode"] == "lb1" and data["revision"] == wrong
    assert "not healthy after" in data["message"] and "lb1 failed its health gate" in data["message"], data
    text = fleet.lab.exec("lb2", ["reconcile", "status", "--cluster"], check=False)
    assert text.returncode == 1
    assert "Stalled" in text.stdout and "failed node: lb1" in text.stdout, text.stdout
    print(text.stdout)
    # lb2 waits: still the previous revision, its HAProxy still sends traffic to 8080, and it serves the VIP
    time.sleep(3)
    lb2 = fleet.agent("lb2")
    assert lb2["revision"] == good, lb2
    assert "halted" in (lb2.get("rollout") or {}).get("waiting", ""), lb2.get("rollout")
    assert ":8080" in fleet.lab.read_file("lb2", "/etc/haproxy/haproxy.cfg")
    assert ":8099" in fleet.lab.read_file("lb1", "/etc/haproxy/haproxy.cfg")
    assert fleet.holder() == "lb2"
    lb1 = fleet.agent("lb1")
    assert (lb1.get("rollout") or {}).get("phase") == "failed", lb1.get("rollout")
    FIGURES["lb1 wrong turn"] = lb1["rollout"].get("figures")
    fleet.check_failures(FIGURES, "after the wrong commit")


def test_the_fix_rolls_out_node_by_node_and_the_vip_returns_to_lb1(fleet):
    pushed = time.monotonic()
    fix = fleet.commit(8080, True, "the right port, and X-Forwarded-For (a reload)")
    seen_lb2_before_lb1 = []

    def both_done() -> bool:
        a1, a2 = fleet.agent("lb1"), fleet.agent("lb2")
        if a2.get("revision") == fix and a1.get("revision") != fix:
            seen_lb2_before_lb1.append(True)
        return a1.get("revision") == fix and a2.get("revision") == fix and a1.get("ready") and a2.get("ready")

    wait_for(both_done, 120, "both nodes to apply the fix", fleet.logs_text)
    FIGURES["fix rollout (both nodes)"] = round(time.monotonic() - pushed, 1)
    assert not seen_lb2_before_lb1, "lb2 applied the fix before lb1"
    data = wait_for(lambda: fleet.cluster_in("Complete"), 30, "the rollout to complete", fleet.logs_text)
    assert data["revision"] == fix
    assert all(i["revision"] == fix and i["phase"] == "idle" for i in data["nodes"].values()), data["nodes"]
    for n in ("lb1", "lb2"):
        rollout = fleet.agent(n).get("rollout") or {}
        figures = rollout.get("figures")
        assert figures and figures["gate"] < 12, (n, figures)
        FIGURES[f"{n} fix turn"] = dict(figures, how=rollout.get("how"))
        assert "option forwardfor" in fleet.lab.read_file(n, "/etc/haproxy/haproxy.cfg")
    # lb1 (first, drained by its failure) proved the fix: lb2 reloads in place, no drain
    assert FIGURES["lb1 fix turn"]["how"].startswith("drained first"), FIGURES["lb1 fix turn"]
    assert FIGURES["lb2 fix turn"]["how"].startswith("in place") and "proven on lb1" in FIGURES["lb2 fix turn"]["how"]
    assert "drain" not in FIGURES["lb2 fix turn"], FIGURES["lb2 fix turn"]
    wait_for(lambda: fleet.holder() == "lb1", 15, "the VIP back on lb1 (priority 150)")
    fleet.check_failures(FIGURES, "after the fix")


def test_two_agents_racing_for_one_turn_one_wins_through_the_compare_and_set(fleet):
    """Both agents' compare-and-set at the same instant, each claiming to be first in the
    order: Pacemaker takes one patch and refuses the other, which reads again and waits."""
    script = fleet.lab.shared / "race.py"
    script.write_text(RACE)
    at = str(time.time() + 1.5)
    procs = {n: fleet.lab.popen(n, ["python3", str(script), n, "3" * 40, at], stdout=subprocess.PIPE, text=True)
             for n in ("lb1", "lb2")}
    results = {n: json.loads(p.communicate(timeout=60)[0]) for n, p in procs.items()}
    winners = [n for n, r in results.items() if r["won"]]
    assert len(winners) == 1, results
    loser = "lb2" if winners == ["lb1"] else "lb1"
    assert results[loser]["conflicts"] >= 1 or results[loser]["sawHolder"], results
    FIGURES["race"] = results
    # give the slot back: the next test rolls out for real
    fleet.lab.exec(winners[0], ["python3", str(script), winners[0], "3" * 40, "0", "release"])
    assert fleet.cluster()["holders"] == []


def test_killing_the_agent_in_its_turn_does_not_leave_the_rollout_stuck(fleet):
    """lb1's agent is SIGKILLed while it soaks (in service, Healthy): its heartbeat stops,
    lb2 takes the turn over after turnTimeout (10s) and finishes; lb1's agent, started
    again, finds its revision applied and publishes it."""
    pushed = time.monotonic()
    change = fleet.commit(8080, False, "no X-Forwarded-For (a reload), and a long soak", soak="30s")
    wait_for(lambda: (fleet.cluster().get("nodes", {}).get("lb1") or {}).get("phase") == "soaking", 60,
             "lb1 to soak", fleet.logs_text)
    FIGURES["lb1 soaking after"] = round(time.monotonic() - pushed, 1)
    fleet.kill_hard("agent-lb1")
    killed = time.monotonic()
    wait_for(lambda: fleet.cluster().get("holders") == ["lb2"], 60, "lb2 to take the turn over", fleet.logs_text)
    FIGURES["takeover after kill -9"] = round(time.monotonic() - killed, 1)
    wait_for(lambda: fleet.at("lb2", change), 120, "lb2 to finish its turn", fleet.logs_text)
    fleet.start_agent("lb1")
    wait_for(lambda: fleet.at("lb1", change), 60, "lb1's new agent to publish the revision", fleet.logs_text)
    data = wait_for(lambda: fleet.cluster_in("Complete"), 60, "the rollout to complete", fleet.logs_text)
    assert all(i["revision"] == change for i in data["nodes"].values()), data["nodes"]
    counts = fleet.stop_client()
    FIGURES["requests"] = counts["ok"] + counts["failed"]
    FIGURES["failures"] = counts["failures"]
    print("rollout figures:", json.dumps(FIGURES, indent=1))
    fleet.check_failures(FIGURES, "in total")
