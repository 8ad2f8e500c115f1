"""Health beside sync in the engine: asked after observing, in threads, bounded, read-only.

Real reconcilers of the JSON-file kinds (tests/unit/json_kinds.py) with a `health` of
their own: a backend is Degraded while its file says `"down": true`.
"""
from __future__ import annotations

import io
import json
import threading

import pytest

import reconcilers
from controller.cli import main
from controller.engine import Engine
from controller.loader import load_tree
from controller.output import Progress, render_text
from reconcilers.base import NODE, AtomicWriter, Desired, Health, Node, NodeNote, PerObject, Runner
from tests.unit import json_kinds


class HealthBackends(PerObject):
    """Backends as JSON files; Degraded while the file has `"down": true` (set by a test)."""

    kind = "Backend"
    mode = "normal"  # normal | hang | crash | write | barrier
    release = threading.Event()
    barrier: threading.Barrier | None = None

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({"balance": m.spec.balance})
                            for m in tree.on_node("Backend", node.name)}}

    def observe(self, node):
        return {self.kind: {n: {k: v for k, v in d.items() if k != "down"}
                            for n, d in json_kinds.read_objects("backend").items()}}

    def explain(self, change, node):
        return [NodeNote("the backend daemon will be reloaded"), f"{change.name} gets its own file"]

    def apply_one(self, change, node):
        json_kinds.write_object("backend", change, node)

    def health(self, node, desired, observed):
        if self.mode == "hang":
            self.release.wait(10)
        elif self.mode == "crash":
            raise RuntimeError("the status socket said nonsense")
        elif self.mode == "write":
            AtomicWriter(node).write(json_kinds.STORE / "health-was-here", "x")
        elif self.mode == "barrier":
            assert self.barrier is not None
            self.barrier.wait(5)
        files = json_kinds.read_objects("backend")
        out = {}
        for name in desired[self.kind]:
            if name not in files:
                out[name] = Health.degraded("NotThere", "no file")
            elif files[name].get("down"):
                out[name] = Health.degraded("ServersDown", "marked down")
            else:
                out[name] = Health.healthy("ServersUp", "all up")
        return {self.kind: out, NODE: {"daemon": Health.healthy("Running", "it runs")}}


class HealthFrontends(json_kinds.JsonFrontends):
    barrier: threading.Barrier | None = None

    def health(self, node, desired, observed):
        if self.barrier is not None:
            self.barrier.wait(5)
        return {self.kind: {n: Health.healthy("Listening") for n in desired[self.kind]}}


def backend(name: str) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  balance: roundrobin\n  servers: [{{name: s1, address: 198.51.100.1, port: 80}}]\n")


def frontend(name: str, to: str) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  bind: [{{address: 127.0.0.1, port: 8080}}]\n  defaultBackend: {to}\n")


@pytest.fixture
def env(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    # This test machine is lb1 for the CLI (apply acts only on the machine it runs on).
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:HealthBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:HealthFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr(HealthBackends, "mode", "normal")
    monkeypatch.setattr(HealthBackends, "barrier", None)
    monkeypatch.setattr(HealthFrontends, "barrier", None)
    HealthBackends.release.clear()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
    (repo / "lb.yaml").write_text(backend("app") + backend("api") + frontend("web", "app"))

    class Env:
        state = tmp_path / "state"

        def engine(self, dry_run: bool = False, **kw) -> Engine:
            return Engine(load_tree(repo), Node("lb1", Runner(dry_run=dry_run, recording=True), self.state), **kw)

        def mark_down(self, name: str) -> None:
            path = store / f"backend-{name}.json"
            path.write_text(json.dumps(dict(json.loads(path.read_text()), down=True)))

        def cli(self, *args: str) -> int:
            return main([*args, "--repo", str(repo), "--node", "lb1", "--state-dir", str(self.state)])

    yield Env()
    HealthBackends.release.set()


def health_of(record) -> dict:
    return {(o.kind, o.name): (o.health or {}).get("reason") for o in record.objects}


def test_an_object_in_sync_can_be_degraded_and_health_is_reported_beside_sync(env):
    env.engine().apply()
    env.mark_down("app")
    record = env.engine(dry_run=True).plan()
    assert record.exit_code() == 0  # in sync: health does not make a plan pending
    assert health_of(record) == {("Backend", "api"): "ServersUp", ("Backend", "app"): "ServersDown",
                                 ("Frontend", "web"): "Listening"}
    data = record.to_dict()
    assert data["sync"]["status"] == "Ready" and data["health"]["status"] == "Degraded"
    assert data["health"]["counts"] == {"Healthy": 3, "Degraded": 1}  # three objects and the node facet
    app = next(o for o in data["objects"] if o["name"] == "app")
    assert app["sync"] == {"status": "Ready", "reason": "InSync"}
    assert app["health"] == {"status": "Degraded", "reason": "ServersDown", "message": "marked down"}
    assert data["node_health"] == {"daemon": {"status": "Healthy", "reason": "Running", "message": "it runs"}}


def test_plan_text_shows_health_on_each_line_and_the_node_once(env):
    env.engine().apply()
    env.mark_down("app")
    text = render_text(env.engine(dry_run=True).plan())
    line = next(l for l in text.splitlines() if "Backend app" in l)
    assert line.startswith("  = Backend app") and line.rstrip().endswith("Degraded  ServersDown: marked down")
    assert "node lb1: sync Ready (AllReady) · health Degraded (1 Degraded, 3 Healthy)" in text
    assert "daemon" in text and "Running: it runs" in text


def test_a_hung_health_check_makes_its_objects_unknown_not_the_plan_late(env):
    env.engine().apply()
    HealthBackends.mode = "hang"
    record = env.engine(dry_run=True, health_timeout=0.2).plan()
    assert health_of(record)[("Backend", "app")] == "HealthTimeout"
    assert health_of(record)[("Frontend", "web")] == "Listening"  # the others are not held up
    assert record.timings["health.Backend"] == 0.2


def test_a_failing_health_check_is_unknown_with_its_message(env):
    env.engine().apply()
    HealthBackends.mode = "crash"
    record = env.engine(dry_run=True).plan()
    app = next(o for o in record.objects if o.name == "app")
    assert app.health == {"status": "Unknown", "reason": "HealthCheckFailed", "message": "the status socket said nonsense"}


def test_health_is_read_only_even_during_an_apply(env):
    HealthBackends.mode = "write"
    record = env.engine().apply()
    assert health_of(record)[("Backend", "app")] == "HealthCheckFailed"
    assert "dry-run must not write" in next(o for o in record.objects if o.name == "app").health["message"]
    assert not (env.state.parent / "store" / "health-was-here").exists()
    assert record.result == "converged"  # health never fails a run


def test_reconcilers_health_checks_run_at_the_same_time(env):
    env.engine().apply()
    barrier = threading.Barrier(2)  # each check waits for the other: only concurrent checks pass
    HealthBackends.mode, HealthBackends.barrier, HealthFrontends.barrier = "barrier", barrier, barrier
    record = env.engine(dry_run=True).plan()
    assert health_of(record)[("Frontend", "web")] == "Listening"
    assert health_of(record)[("Backend", "app")] == "ServersUp"


def test_no_health_leaves_health_out(env, capsys):
    assert env.cli("apply", "--no-health", "-o", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert all(o["health"] is None for o in data["objects"])
    assert data["health"] == {"status": None, "reason": "NotChecked", "counts": {}}


def test_a_deleted_object_has_no_health(env):
    env.engine().apply()
    (env.state.parent / "repo" / "lb.yaml").write_text(backend("app") + frontend("web", "app"))
    record = env.engine().apply()
    api = next(o for o in record.objects if o.name == "api")
    assert (api.status, api.action, api.health) == ("changed", "delete", None)
    assert api.sync == {"status": "Ready", "reason": "Deleted"}


def test_node_wide_notes_are_shown_once_and_object_notes_under_their_object(env):
    record = env.engine(dry_run=True).plan()
    assert record.notes == ["the backend daemon will be reloaded"]
    app = next(o for o in record.objects if o.name == "app")
    assert app.notes == ["app gets its own file"]
    assert render_text(record).count("the backend daemon will be reloaded") == 1


def test_creates_show_the_values_they_set(env):
    text = render_text(env.engine(dry_run=True).plan())
    assert "  + Backend app" in text and "      + balance: roundrobin" in text


def test_an_apply_streams_one_line_per_object_as_it_is_applied(env):
    stream = io.StringIO()
    progress = Progress(stream)
    env.engine(progress=progress).apply()
    lines = stream.getvalue().splitlines()
    assert [l.split()[:3] for l in lines if l.strip()] == [
        ["+", "Backend", "api"], ["+", "Backend", "app"], ["+", "Frontend", "web"]]
    assert all("(applied: create)" in l for l in lines if l.strip())


def test_status_shows_the_last_runs_health_beside_its_sync(env, capsys):
    assert env.cli("apply") == 0
    env.mark_down("app")
    assert env.cli("apply", "-o", "json") == 0  # in sync: nothing to do, yet Degraded
    capsys.readouterr()
    assert main(["status", "--state-dir", str(env.state)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "Backend app" in l)
    assert line.startswith("  = Backend app") and "Degraded  ServersDown: marked down" in line
    assert "node lb1: sync Ready (AllReady) · health Degraded (1 Degraded, 3 Healthy)" in out


def test_metrics_carry_each_objects_sync_and_health(env):
    from controller.metrics import AgentMetrics

    env.engine().apply()
    env.mark_down("app")
    metrics = AgentMetrics()
    metrics.run(env.engine().apply(), "test")
    text = metrics.text()
    assert 'reconcile_object_health{kind="Backend",name="app",reason="ServersDown",status="Degraded"} 1.0' in text
    assert 'reconcile_object_sync{kind="Backend",name="app",status="Ready"} 1.0' in text
    assert 'reconcile_object_sync{kind="Backend",name="app",status="Stalled"} 0.0' in text
    assert 'reconcile_node_health{facet="daemon",reason="Running",status="Healthy"} 1.0' in text
    assert "reconcile_healthy 0.0" in text


def test_apply_wait_returns_once_everything_is_healthy(env, capsys):
    env.engine().apply()
    env.mark_down("app")
    path = env.state.parent / "store" / "backend-app.json"
    healed = threading.Timer(0.5, lambda: path.write_text(json.dumps({"balance": "roundrobin"})))
    healed.start()
    try:
        assert env.cli("apply", "--wait", "--timeout", "20s") == 0
    finally:
        healed.cancel()
    out = capsys.readouterr().out
    assert "waiting for health: Backend app: Degraded (ServersDown)" in out
    assert "Healthy after" in out


def test_apply_wait_exits_3_when_health_never_comes(env, capsys):
    env.engine().apply()
    env.mark_down("app")
    assert env.cli("apply", "--wait", "--timeout", "1s", "-o", "json") == 3
    data = json.loads(capsys.readouterr().out)
    assert data["exitCode"] == 3 and data["wait"]["healthy"] is False
    assert data["wait"]["waitingFor"] == ["Backend app: Degraded (ServersDown)"]
