"""What the agent needs from the engine and the state folder: objects held back (backoff),
stopping between two changes (SIGTERM), the per-object drift policy, ownership recorded as
soon as an object is created, and a history that does not fill with idle resyncs.

The engine is driven with a reconciler defined here that manages real JSON files in a
temporary folder (a real reconciler of a tiny kind of state, not a stand-in binary).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import reconcilers
from tests.unit import json_kinds
from controller.engine import Engine
from controller.loader import TreeError, load_tree
from controller.state import read_json, save_run
from reconcilers.base import ApplyError, Change, Desired, Node, PerObject, Runner

class JsonBackends(PerObject):
    """Backends as <store>/backend-<name>.json; `fail` names refuse to apply."""

    kind = "Backend"
    fail: set[str] = set()
    crash_on: set[str] = set()  # names whose apply ends the process (a kill -9, for the engine)

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({"balance": m.spec.balance, "servers": [s.name for s in m.spec.servers]})
                for m in tree.on_node("Backend", node.name)}}

    def observe(self, node):
        return {self.kind: json_kinds.read_objects("backend")}

    def apply_one(self, change: Change, node: Node):
        if change.name in self.crash_on:
            raise SystemExit("killed")
        if change.name in self.fail:
            raise ApplyError(f"{change.name}: told to fail")
        json_kinds.write_object("backend", change, node)


def backend(name: str, balance: str = "roundrobin", drift: str | None = None) -> str:
    meta = f"{{name: {name}, drift: {drift}}}" if drift else f"{{name: {name}}}"
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {meta}\nspec:\n  cluster: web\n"
            f"  balance: {balance}\n  servers:\n    - {{name: s1, address: 198.51.100.1, port: 80}}\n")


def frontend(name: str, backend_name: str, port: int = 8080) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  bind: [{{address: 127.0.0.1, port: {port}}}]\n  defaultBackend: {backend_name}\n")


@pytest.fixture
def env(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:JsonBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", "tests.unit.json_kinds:JsonFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr(JsonBackends, "fail", set())
    monkeypatch.setattr(JsonBackends, "crash_on", set())
    repo = tmp_path / "repo"
    repo.mkdir()

    class Env:
        state = tmp_path / "state"

        def write(self, *docs: str) -> None:
            (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
            (repo / "lb.yaml").write_text("".join(docs))

        def engine(self, dry_run: bool = False, **kw) -> Engine:
            return Engine(load_tree(repo), Node("lb1", Runner(dry_run=dry_run), self.state), **kw)

        def status(self, record) -> dict[str, str]:
            return {f"{o.kind}/{o.name}": o.status for o in record.objects}

        def file(self, name: str) -> Path:
            return store / f"{name}.json"

    return Env()


def test_a_held_object_and_its_dependents_are_skipped_and_the_rest_converges(env):
    env.write(backend("app"), frontend("web", "app"), backend("api"), frontend("api", "api", port=8081))
    record = env.engine(hold={("Backend", "app"): "backing off: app failed 3 times"}).apply()
    status = env.status(record)
    assert status == {"Backend/api": "changed", "Backend/app": "skipped",
                      "Frontend/api": "changed", "Frontend/web": "skipped"}
    errors = {f"{o.kind}/{o.name}": o.error for o in record.objects}
    assert errors["Backend/app"] == "backing off: app failed 3 times"
    assert errors["Frontend/web"] == "skipped: Backend/app failed"
    assert not env.file("backend-app").exists() and env.file("backend-api").exists()


def test_stop_finishes_the_current_change_and_applies_no_more(env):
    env.write(backend("a1"), backend("a2"), backend("a3"))
    applied: list[str] = []
    original = JsonBackends.apply_one

    def counting(self, change, node):
        original(self, change, node)
        applied.append(change.name)

    JsonBackends.apply_one = counting  # type: ignore[method-assign]
    try:
        record = env.engine(stop=lambda: len(applied) >= 1).apply()
    finally:
        JsonBackends.apply_one = original  # type: ignore[method-assign]
    assert applied == ["a1"]
    assert env.status(record) == {"Backend/a1": "changed", "Backend/a2": "skipped", "Backend/a3": "skipped"}
    assert {o.error for o in record.objects if o.name != "a1"} == {"not applied: the agent is stopping"}
    assert record.passes == 1


@pytest.mark.parametrize("policy, status, corrected", [
    ("correct", "drift-corrected", True),
    ("warn", "pending", False),
    ("ignore", "in-sync", False),
])
def test_drift_policy_decides_whether_a_hand_change_is_reverted(env, policy, status, corrected):
    env.write(backend("app", drift=policy))
    env.engine().apply()
    env.file("backend-app").write_text(json.dumps({"balance": "source", "servers": ["s1"]}))  # by hand
    plan = env.engine(dry_run=True).plan()
    record = env.engine().apply()
    obj = record.objects[0]
    assert obj.status == status and obj.drift
    assert plan.objects[0].status == ("pending" if policy != "ignore" else "in-sync")
    after = json.loads(env.file("backend-app").read_text())["balance"]
    assert after == ("roundrobin" if corrected else "source")
    if policy != "correct":
        assert any(f"metadata.drift is {policy}" in n for n in obj.notes)
        assert record.exit_code() == (2 if policy == "warn" else 0)


def test_a_change_in_git_is_applied_whatever_the_drift_policy(env):
    env.write(backend("app", drift="ignore"))
    env.engine().apply()
    env.write(backend("app", balance="leastconn", drift="ignore"))
    record = env.engine().apply()
    assert record.objects[0].status == "changed"
    assert json.loads(env.file("backend-app").read_text())["balance"] == "leastconn"


def test_an_object_deleted_by_hand_follows_the_drift_policy(env):
    env.write(backend("app", drift="warn"))
    env.engine().apply()
    env.file("backend-app").unlink()
    record = env.engine().apply()
    assert record.objects[0].status == "pending" and record.objects[0].action == "create"
    assert not env.file("backend-app").exists()


def test_an_object_is_owned_before_it_is_created_even_if_the_run_dies(env):
    env.write(backend("a1"), backend("a2"))
    JsonBackends.crash_on = {"a2"}
    with pytest.raises(SystemExit):
        env.engine().apply()
    inventory = read_json(env.state / "inventory.json", {})
    # both recorded before their create; a2's create never finished, so it has no converged state
    assert sorted(inventory["objects"]) == ["Backend/a1", "Backend/a2"]
    assert inventory["objects"]["Backend/a2"]["hash"] is None
    # the manifest leaves git before the agent is back: the object it created is pruned
    JsonBackends.crash_on = set()
    env.write(backend("a2"))
    record = env.engine(allow_mass_prune=True).apply()
    assert env.status(record) == {"Backend/a1": "changed", "Backend/a2": "changed"}
    assert not env.file("backend-a1").exists()


def test_an_owned_object_that_never_came_to_be_is_forgotten_not_deleted(env):
    env.write(backend("a1"), backend("a2"))
    JsonBackends.crash_on = {"a2"}
    with pytest.raises(SystemExit):
        env.engine().apply()
    JsonBackends.crash_on = set()
    env.write(backend("a1"))  # a2 leaves git: it is owned, but it does not exist
    record = env.engine().apply()
    assert env.status(record) == {"Backend/a1": "in-sync"}
    assert list(read_json(env.state / "inventory.json", {})["objects"]) == ["Backend/a1"]


def test_drift_policy_is_validated_with_file_line_and_field(env, tmp_path):
    env.write(backend("app", drift="sometimes"))
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path / "repo")
    (problem,) = err.value.problems
    assert (problem.file, problem.line, problem.field) == ("lb.yaml", 4, "metadata.drift")
    assert "'correct', 'warn', 'ignore' or 'enforce'" in problem.message


def test_history_collapses_identical_idle_runs_but_keeps_every_change(tmp_path):
    def run(revision: str, result: str, counts: dict, trigger: str) -> dict:
        return {"revision": revision, "mode": "apply", "started": "t", "seconds": 0.1, "result": result,
                "counts": counts, "errors": [], "trigger": trigger, "objects": []}

    save_run(tmp_path, run("r1", "converged", {"changed": 1}, "commit"), collapse=True)
    for _ in range(3):
        save_run(tmp_path, run("r1", "in-sync", {"in-sync": 1}, "resync"), collapse=True)
    save_run(tmp_path, run("r2", "converged", {"changed": 1}, "commit"), collapse=True)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [(h["revision"], h["result"], h.get("repeats", 1)) for h in history] == [
        ("r2", "converged", 1), ("r1", "in-sync", 3), ("r1", "converged", 1)]
    assert history[1]["trigger"] == "resync"
    save_run(tmp_path, run("r2", "converged", {"changed": 1}, "commit"))  # the CLI never collapses
    assert len(json.loads((tmp_path / "history.json").read_text())) == 4
