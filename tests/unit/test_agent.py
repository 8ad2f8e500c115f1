"""The agent loop on real git repositories: commits, broken commits, force pushes, pruning,
backoff, drift from watch(), signals, the node lock.

The node's state is JSON files in a temporary folder, managed by reconcilers defined here
(real reconcilers of a tiny kind of state, registered by monkeypatching the registry). The
git repositories, watchfiles, the mirror clone and the state folder are all real.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

import reconcilers
from tests.unit import json_kinds
from tests.unit.json_kinds import CLUSTER
from controller import agent as agent_mod
from controller.agent import Agent, Backoff, Config, Triggers, parse_duration
from controller.state import NodeLock, read_json
from reconcilers.base import ApplyError, Change, Desired, Node, PerObject

STOP_WATCH = threading.Event()


class StoreBackends(PerObject):
    """Backends as <store>/backend-<name>.json. `fail`: names that refuse to apply;
    `invalid`: a balance value the native validation refuses."""

    kind = "Backend"
    fail: set[str] = set()
    invalid = "source"
    slow: float = 0.0

    def desired(self, tree, node):
        self.wanted = {m.metadata.name: m.spec.balance for m in tree.on_node("Backend", node.name)}
        return {self.kind: {m.metadata.name: Desired({"balance": m.spec.balance, "servers": [s.name for s in m.spec.servers]})
                for m in tree.on_node("Backend", node.name)}}

    def validate(self, node):
        return [f"backend {n}: balance {b} refused by the validator" for n, b in self.wanted.items() if b == self.invalid]

    def observe(self, node):
        return {self.kind: json_kinds.read_objects("backend")}

    def apply_one(self, change: Change, node: Node):
        time.sleep(self.slow)
        if change.name in self.fail:
            raise ApplyError(f"{change.name}: the backend refuses")
        json_kinds.write_object("backend", change, node)

    def watch(self, node):
        import watchfiles

        for _ in watchfiles.watch(json_kinds.STORE, step=10, debounce=200, stop_event=STOP_WATCH, rust_timeout=300,
                                  raise_interrupt=False):
            yield "a backend file changed"


def backend(name: str, balance: str = "roundrobin", servers: int = 1) -> str:
    lines = "".join(f"    - {{name: s{i}, address: 198.51.100.{i}, port: 80}}\n" for i in range(1, servers + 1))
    return (f"apiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  balance: {balance}\n  servers:\n{lines}")


def frontend(name: str, backend_name: str, port: int) -> str:
    return (f"apiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  bind: [{{address: 127.0.0.1, port: {port}}}]\n  defaultBackend: {backend_name}\n")


def wait_for(check: Callable[[], object], timeout: float = 5.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.test", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "test@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


class Repo:
    """A working repository the test commits to (the operator's side)."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir()
        git(path, "init", "-q", "-b", "main")

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        for name, text in files.items():
            target = self.path / name
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture
def env(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:StoreBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", "tests.unit.json_kinds:JsonFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr(StoreBackends, "fail", set())
    monkeypatch.setattr(StoreBackends, "slow", 0.0)
    STOP_WATCH.clear()
    repo = Repo(tmp_path / "repo")
    repo.commit({"cluster.yaml": CLUSTER}, "the cluster")

    class Env:
        def __init__(self):
            self.repo, self.store, self.state = repo, store, tmp_path / "state"
            self.agents: list[tuple[Agent, threading.Thread | None]] = []

        def config(self, **kw) -> Config:
            base = dict(repo=str(repo.path), node="lb1", state_dir=self.state, metrics_port=0, resync=3600.0,
                        backoff_base=0.2, backoff_max=2.0)
            base.update(kw)
            return Config(**base)

        def agent(self, **kw) -> Agent:
            a = Agent(self.config(**kw))
            a.source.open()
            self.agents.append((a, None))
            return a

        def start(self, **kw) -> Agent:
            a = Agent(self.config(**kw))
            t = threading.Thread(target=a.run, daemon=True)
            t.start()
            self.agents.append((a, t))
            wait_for(lambda: a.runs or a.rejected or a.source_error, what="the first cycle")
            return a

        def stop(self) -> None:
            STOP_WATCH.set()
            for a, t in self.agents:
                a.stop_requested = True
                a.triggers.put("stop")
                if t is not None:
                    t.join(5)
                    assert not t.is_alive(), "the agent did not stop"
                a.stopping.set()
            self.agents.clear()

        def files(self) -> dict[str, dict]:
            return {p.stem: json.loads(p.read_text()) for p in sorted(store.glob("*.json"))}

        def status(self) -> dict:
            return read_json(self.state / "agent.json", {})

    e = Env()
    yield e
    e.stop()


def cycle(agent: Agent, *reasons: str):
    return agent.cycle({r: "test" for r in reasons})


# --- commits -------------------------------------------------------------------------------


def test_a_commit_to_the_watched_repository_converges_the_node(env):
    agent = env.start()
    sha = env.repo.commit({"lb.yaml": backend("app")})
    wait_for(lambda: "backend-app" in env.files(), what="the commit to be applied")
    assert env.files()["backend-app"] == {"balance": "roundrobin", "servers": ["s1"]}
    wait_for(lambda: env.status().get("revision") == sha, what="the status")
    status = env.status()
    assert status["ready"] and status["reason"] == "ReconciliationSucceeded"
    assert agent.last_trigger == "commit"
    history = read_json(env.state / "history.json", [])
    assert history[0]["revision"] == sha and history[0]["trigger"] == "commit"


def test_a_broken_commit_applies_nothing_and_the_fix_after_it_applies(env):
    good = env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    # one commit both changes app and breaks api: nothing of it may be applied
    bad = env.repo.commit({"lb.yaml": backend("app", "leastconn") + "---\n" + backend("api").replace("balance", "balanse")})
    cycle(agent, "commit")
    assert env.files() == {"backend-app": {"balance": "roundrobin", "servers": ["s1"]}}
    status = env.status()
    assert not status["ready"] and status["reason"] == "ArtifactFailed"
    assert status["revision"] == good and status["latestRevision"] == bad
    assert any(p.startswith("lb.yaml:15: spec.balanse: unknown field") for p in status["latestError"]["problems"])
    assert "nothing of it applied" in status["message"] and f"{good[:12]} stays applied" in status["message"]
    history = read_json(env.state / "history.json", [])
    assert history[0]["result"] == "refused" and history[0]["revision"] == bad
    # drift meanwhile is still corrected against the last good revision
    (env.store / "backend-app.json").unlink()
    cycle(agent, "drift")
    assert env.files()["backend-app"]["balance"] == "roundrobin"
    fix = env.repo.commit({"lb.yaml": backend("app", "leastconn") + "---\n" + backend("api")})
    cycle(agent, "commit")
    assert env.files()["backend-app"]["balance"] == "leastconn" and "backend-api" in env.files()
    status = env.status()
    assert status["ready"] and status["revision"] == fix and status["latestError"] is None


def test_a_commit_the_native_validators_refuse_applies_nothing(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    bad = env.repo.commit({"lb.yaml": backend("app") + "---\n" + backend("api", StoreBackends.invalid)})
    cycle(agent, "commit")
    assert set(env.files()) == {"backend-app"}
    status = env.status()
    assert status["reason"] == "ValidationFailed" and status["latestRevision"] == bad
    assert status["latestError"]["problems"] == ["Backend: backend api: balance source refused by the validator"]
    assert status["revision"] != bad


def test_a_history_rewrite_is_followed(env, tmp_path):
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(env.repo.path), str(bare))
    git(env.repo.path, "remote", "add", "origin", str(bare))
    agent = env.agent(repo=str(bare), ref="main")
    env.repo.commit({"lb.yaml": backend("app")})
    git(env.repo.path, "push", "-q", "origin", "main")
    cycle(agent, "commit")
    assert set(env.files()) == {"backend-app"}
    # rewrite: drop that commit, commit something else instead, force push
    git(env.repo.path, "reset", "-q", "--hard", "HEAD~1")
    rewritten = env.repo.commit({"lb.yaml": backend("api")})
    git(env.repo.path, "push", "-q", "--force", "origin", "main")
    cycle(agent, "commit")
    assert set(env.files()) == {"backend-api"}
    assert env.status()["revision"] == rewritten


def test_removing_a_manifest_prunes_only_what_the_agent_created(env):
    (env.store / "backend-handmade.json").write_text(json.dumps({"balance": "source", "servers": []}))
    env.repo.commit({"lb.yaml": backend("app") + "---\n" + backend("api")})
    agent = env.agent()
    cycle(agent, "startup")
    env.repo.commit({"lb.yaml": backend("app")})
    cycle(agent, "commit")
    assert set(env.files()) == {"backend-app", "backend-handmade"}


def test_a_newer_revision_supersedes_a_failing_one_and_clears_the_backoff(env):
    env.repo.commit({"lb.yaml": backend("app", servers=1)})
    StoreBackends.fail = {"app"}
    agent = env.agent(backoff_base=60.0)
    cycle(agent, "startup")
    assert ("Backend", "app") in agent.backoff.objects
    StoreBackends.fail = set()
    cycle(agent, "resync")  # still held back: 60 s
    assert "backend-app" not in env.files()
    env.repo.commit({"lb.yaml": backend("app", servers=2)})
    cycle(agent, "commit")
    assert env.files()["backend-app"]["servers"] == ["s1", "s2"]
    assert agent.backoff.objects == {}


def test_a_failing_object_backs_off_exponentially_and_only_its_dependents_wait(env):
    env.repo.commit({"lb.yaml": "---\n".join([backend("app"), frontend("web", "app", 80), backend("api"),
                                              frontend("api", "api", 81)])})
    StoreBackends.fail = {"app"}
    agent = env.agent(backoff_base=0.5, backoff_max=10.0)
    before = time.time()
    record = cycle(agent, "startup")
    after = time.time()
    assert {f"{o.kind}/{o.name}": o.status for o in record.objects} == {
        "Backend/api": "changed", "Backend/app": "failed", "Frontend/api": "changed", "Frontend/web": "skipped"}
    first = agent.backoff.objects[("Backend", "app")]
    # base 0.5 s ± 10 % after the failure, which happened within the cycle (bounds hold on a busy machine)
    assert first.failures == 1 and before + 0.45 <= first.until <= after + 0.55
    status = env.status()
    assert status["backoff"]["Backend/app"]["failures"] == 1
    assert status["reason"] == "ReconciliationFailed" and "Backend/app: app: the backend refuses" in status["message"]
    # a run before the retry time does not try app again
    record = cycle(agent, "drift")
    assert "backing off after 1 failure" in next(o.error for o in record.objects if o.name == "app")
    assert agent.backoff.objects[("Backend", "app")].failures == 1
    time.sleep(max(0.0, first.until - time.time()) + 0.01)
    before = time.time()
    cycle(agent, "retry")
    after = time.time()
    second = agent.backoff.objects[("Backend", "app")]
    assert second.failures == 2 and before + 0.9 <= second.until <= after + 1.1  # doubled
    StoreBackends.fail = set()
    time.sleep(max(0.0, second.until - time.time()) + 0.01)
    record = cycle(agent, "retry")
    assert agent.backoff.objects == {} and {o.status for o in record.objects} <= {"changed", "in-sync"}
    assert {"backend-app", "frontend-web"} <= set(env.files())


def test_backoff_expiry_wakes_the_loop_and_retries_by_itself(env):
    env.repo.commit({"lb.yaml": backend("app")})
    StoreBackends.fail = {"app"}
    agent = env.start(backoff_base=0.2)
    wait_for(lambda: ("Backend", "app") in agent.backoff.objects, what="a failure")
    StoreBackends.fail = set()
    wait_for(lambda: "backend-app" in env.files(), timeout=3, what="the retry")
    wait_for(lambda: env.status().get("ready"), what="ready")


def test_backoff_delays_double_up_to_the_cap():
    b = Backoff(base=1.0, cap=4.0)

    class O:
        kind, name, status, error = "Backend", "app", "failed", "boom"

    class R:
        objects = [O()]

    now = 1000.0
    delays = []
    for _ in range(5):
        b.update(R(), now)  # type: ignore[arg-type]
        delays.append(round(b.objects[("Backend", "app")].until - now, 1))
        now = b.objects[("Backend", "app")].until
    assert [d for d in delays] == pytest.approx([1, 2, 4, 4, 4], rel=0.11)


# --- drift -------------------------------------------------------------------------------------


def test_a_change_by_hand_is_seen_by_watch_and_corrected(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.start()
    wait_for(lambda: "backend-app" in env.files())
    wait_for(lambda: "Backend" in agent.watchers, what="the Backend watch")
    time.sleep(0.15)  # the watch is set up
    (env.store / "backend-app.json").write_text(json.dumps({"balance": "source", "servers": ["s1"]}))
    wait_for(lambda: env.files()["backend-app"]["balance"] == "roundrobin", what="the drift to be corrected")
    assert agent.drift_events >= 1
    wait_for(lambda: 'reconcile_drift_objects_total{action="corrected",kind="Backend"} 1.0' in agent.metrics.text(),
             what="the drift metric")
    assert 'reconcile_drift_events_total{kind="Backend"}' in agent.metrics.text()


def test_triggers_coalesce_a_burst_into_one_run():
    t = Triggers()
    for i in range(50):
        t.put("drift", f"event {i}")
    t.put("commit", "refs/heads/main")
    got = t.wait(1.0)
    assert got == {"drift": "event 0", "commit": "refs/heads/main"}
    assert t.wait(0.01) == {}


def test_drift_runs_that_find_nothing_space_out(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    gaps = []
    for _ in range(4):
        cycle(agent, "drift")
        gaps.append(agent.quiet_gap)
    assert gaps == [0.1, 0.2, 0.4, 0.8]
    now = agent.last_run_end
    assert agent.drift_delay(now + 0.3) == pytest.approx(0.5)  # a chatty watch waits
    assert agent.drift_delay(now + 1.5) == 0.0 and agent.quiet_gap == 0.0  # after a quiet second: at once
    for _ in range(3):
        cycle(agent, "drift")
    (env.store / "backend-app.json").unlink()
    cycle(agent, "drift")
    assert agent.quiet_gap == 0.0  # a run that corrected something resets the gap


# --- the remote case, durations ------------------------------------------------------------------


def test_a_remote_repository_is_polled_and_a_new_commit_applied(env, tmp_path):
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(env.repo.path), str(bare))
    git(env.repo.path, "remote", "add", "origin", str(bare))
    agent = env.start(repo=f"file://{bare}", interval=0.2)
    assert agent.source.remote
    env.repo.commit({"lb.yaml": backend("app")})
    git(env.repo.path, "push", "-q", "origin", "main")
    wait_for(lambda: "backend-app" in env.files(), timeout=5, what="the polled commit")


def test_durations_parse_like_the_rest_of_the_tool():
    assert [parse_duration(s) for s in ("500ms", "30s", "5m", "1h", "2")] == [0.5, 30, 300, 3600, 2]
    with pytest.raises(Exception):
        parse_duration("soon")


# --- restart, lock, signals -------------------------------------------------------------------


def test_after_a_restart_with_a_broken_head_the_last_applied_revision_is_enforced(env):
    good = env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    env.repo.commit({"lb.yaml": "kind: [\n"})
    env.stop()
    (env.store / "backend-app.json").unlink()  # drift while the agent is down
    agent = env.agent()
    cycle(agent, "startup")
    assert "backend-app" in env.files()
    status = env.status()
    assert status["revision"] == good and status["reason"] == "ArtifactFailed"


def test_a_second_agent_on_the_node_refuses_to_start(env, capsys, monkeypatch):
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")  # this test machine is lb1
    with NodeLock(env.state):
        code = agent_mod.main(["--repo", str(env.repo.path), "--node", "lb1", "--state-dir", str(env.state),
                               "--metrics-port", "0", "--once"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"another reconcile (pid {os.getpid()}) holds {env.state / 'lock'}" in err
    assert "only one agent" in err


def test_the_agent_acts_on_this_machine_only(env, capsys, monkeypatch):
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb2")
    code = agent_mod.main(["--repo", str(env.repo.path), "--node", "lb1", "--state-dir", str(env.state),
                           "--metrics-port", "0", "--once"])
    assert code == 1
    assert "this host is 'lb2', not 'lb1'" in capsys.readouterr().err
    assert not (env.state / "status.json").exists()


def test_the_lock_of_an_agent_killed_with_kill_9_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from controller.state import NodeLock; "
         "NodeLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from controller.status import lock_holder

        assert lock_holder(tmp_path) == holder.pid
        with pytest.raises(Exception, match=f"pid {holder.pid}"):
            NodeLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with NodeLock(tmp_path):
        from controller.status import lock_holder

        assert lock_holder(tmp_path) == os.getpid()


def test_sighup_reconciles_now_and_sigterm_finishes_the_current_change_and_exits(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = Agent(env.config())
    old = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    agent.install_signals()
    result: dict[str, object] = {}

    def operator() -> None:
        try:
            wait_for(lambda: agent.runs == 1, what="the first run")
            (env.store / "backend-app.json").unlink()  # drift no watch sees yet: SIGHUP
            os.kill(os.getpid(), signal.SIGHUP)
            wait_for(lambda: "backend-app" in env.files(), what="SIGHUP to reconcile")
            result["after_hup"] = agent.last_trigger
            StoreBackends.slow = 0.15
            env.repo.commit({"lb.yaml": "---\n".join(backend(n) for n in ("a1", "a2", "a3"))})
            wait_for(lambda: "backend-a1" in env.files(), what="the first change")
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as err:  # pragma: no cover - reported below
            result["error"] = err
            agent.stop_requested = True
            agent.triggers.put("stop")

    helper = threading.Thread(target=operator)
    helper.start()
    try:
        code = agent.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        helper.join(5)
        StoreBackends.slow = 0.0
    assert "error" not in result, result.get("error")
    assert code == 0 and result["after_hup"] == "signal"
    files = set(env.files())
    assert "backend-a1" in files and "backend-a3" not in files  # finished one change, started no other
    last = read_json(env.state / "status.json", {})
    assert {o["name"]: o["error"] for o in last["objects"] if o["status"] == "skipped"}["a3"] == \
        "not applied: the agent is stopping"


def test_a_refused_newer_revision_leaves_the_backoff_of_the_applied_one(env):
    env.repo.commit({"lb.yaml": backend("app")})
    StoreBackends.fail = {"app"}
    agent = env.agent(backoff_base=60.0)
    cycle(agent, "startup")
    env.repo.commit({"lb.yaml": "kind: [\n"})
    cycle(agent, "commit")
    assert agent.backoff.objects[("Backend", "app")].failures == 1
    assert env.status()["backoff"]["Backend/app"]["failures"] == 1


# --- one commit, one run ---------------------------------------------------------------------------


def test_a_watch_event_from_the_agents_own_apply_is_not_drift_and_causes_no_run(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.start()
    wait_for(lambda: "Backend" in agent.watchers, what="the Backend watch")
    time.sleep(0.3)
    runs, history = agent.runs, len(read_json(env.state / "history.json", []))
    env.repo.commit({"lb.yaml": backend("app", servers=2) + "---\n" + backend("api")})
    wait_for(lambda: env.files().get("backend-api"), what="the commit to be applied")
    time.sleep(1.0)  # the watch sees the agent's own writes meanwhile
    assert agent.runs == runs + 1  # the commit's run, and no "drift" run after it
    assert agent.drift_events == 0
    assert 'reconcile_drift_events_total{kind=' not in agent.metrics.text()
    assert len(read_json(env.state / "history.json", [])) == history + 1


def test_a_drift_check_that_finds_the_node_in_sync_records_no_run(env):
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    runs = agent.runs
    assert cycle(agent, "drift") is None and agent.runs == runs and agent.drift_events == 0
    (env.store / "backend-app.json").unlink()
    record = cycle(agent, "drift")
    assert record is not None and agent.runs == runs + 1 and agent.drift_events == 1


# --- a wake from another node --------------------------------------------------------------------


def test_a_wake_looks_at_the_source_first_and_runs_the_newest_revision(env):
    # the Pacemaker DC woken by a node that owes it a CIB change: unlike drift, which
    # enforces the revision already applied, a wake fetches and runs the newest one
    env.repo.commit({"lb.yaml": backend("app")})
    agent = env.agent()
    cycle(agent, "startup")
    newest = env.repo.commit({"lb.yaml": backend("app") + "---\n" + backend("api")})
    (env.store / "backend-app.json").unlink()  # drift, so that the drift run is a real one
    cycle(agent, "drift")
    assert "backend-api" not in env.files() and agent.good[0].sha != newest
    record = cycle(agent, "wake")
    assert record is not None and agent.good[0].sha == newest and "backend-api" in env.files()


def test_a_watch_that_yields_a_wake_puts_a_wake_trigger_not_drift(env):
    from reconcilers.base import Wake

    agent = env.agent()
    agent._thread("watch-test", lambda: iter([Wake("lb2 asked"), "a file changed"]), "drift", "Backend")
    reasons = wait_for(lambda: agent.triggers.wait(0.5), what="the triggers")
    reasons.update(agent.triggers.wait(0.5))
    assert reasons.get("wake") == "Backend: lb2 asked" and reasons.get("drift") == "Backend: a file changed"
    agent.stopping.set()
