"""The engine: plan, apply, converge, drift, prune, ordering and failure isolation.

These tests drive the engine with a reconciler defined here that manages real JSON files
in a temporary folder: a real reconciler of a tiny kind of state, not a stand-in binary.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import reconcilers
from tests.unit import json_kinds
from controller.cli import main
from controller.engine import Engine
from controller.loader import load_tree
from controller.state import Inventory
from reconcilers.base import (
    ApplyError, AtomicWriter, Change, CommandError, Desired, DryRunViolation, Node, PerObject, Reconciler, Runner,
)

class FileBackends(PerObject):
    """Backends as JSON files <store>/backend-<name>.json."""

    kind = "Backend"
    after = ()
    fail: set[str] = set()
    sticky: set[str] = set()  # names whose apply never sticks
    applied: list[tuple[str, str]] = []

    def desired(self, tree, node):
        out = {}
        for m in tree.on_node("Backend", node.name):
            out[m.metadata.name] = Desired(
                {"balance": m.spec.balance,
                 "servers": {s.name: {"address": s.address, "port": s.port, "weight": s.weight} for s in m.spec.servers}},
                ignore=tuple("/servers/*/weight" for _ in [1] if "weight" in m.spec.ignore),
            )
        return {self.kind: out}

    def observe(self, node):
        return {self.kind: json_kinds.read_objects("backend")}

    def apply_one(self, change: Change, node: Node):
        FileBackends.applied.append((change.action, change.name))
        if change.name in self.fail:
            raise ApplyError(f"cannot apply {change.name}: told to fail")
        if change.name in self.sticky and change.action != "delete":
            change = Change(change.kind, change.name, change.action, {"balance": "never-right"}, change.observed)
        json_kinds.write_object("backend", change, node)


class FileFrontends(json_kinds.JsonFrontends):
    def apply_one(self, change, node):
        FileBackends.applied.append((change.action, change.name))
        super().apply_one(change, node)


def backend(name: str, servers: int = 2, weight: int = 1, extra: str = "") -> str:
    lines = "\n".join(f"    - {{name: s{i}, address: 198.51.100.{i}, port: 80, weight: {weight}}}"
                      for i in range(1, servers + 1))
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n"
            f"  cluster: web\n{extra}  servers:\n{lines}\n")


def frontend(name: str, backend_name: str, port: int = 8080) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  bind: [{{address: 127.0.0.1, port: {port}}}]\n  defaultBackend: {backend_name}\n")


@pytest.fixture
def env(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    # This test machine is lb1 for the CLI (apply acts only on the machine it runs on).
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:FileBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:FileFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr(FileBackends, "fail", set())
    monkeypatch.setattr(FileBackends, "sticky", set())
    monkeypatch.setattr(FileBackends, "applied", [])
    repo = tmp_path / "repo"
    repo.mkdir()

    class Env:
        def __init__(self):
            self.repo, self.store, self.state = repo, store, tmp_path / "state"

        def write(self, *docs: str) -> None:
            (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
            (repo / "lb.yaml").write_text("".join(docs))

        def engine(self, dry_run=False, **kw) -> Engine:
            node = Node("lb1", Runner(dry_run=dry_run, recording=True), self.state)
            return Engine(load_tree(repo), node, **kw)

        def cli(self, *args: str) -> int:
            return main([*args, "--repo", str(repo), "--node", "lb1", "--state-dir", str(self.state)])

    return Env()


def test_dry_run_plans_creates_and_changes_nothing(env, capsys):
    env.write(backend("app"), frontend("web", "app"))
    assert env.cli("--dry-run") == 2
    out = capsys.readouterr().out
    assert "+ Backend app" in out and "+ Frontend web" in out
    assert list(env.store.iterdir()) == []
    assert FileBackends.applied == []
    assert not env.state.exists()


def test_apply_converges_and_a_second_apply_has_nothing_to_do(env, capsys):
    env.write(backend("app"), frontend("web", "app"))
    assert env.cli("apply") == 0
    assert json.loads((env.store / "backend-app.json").read_text())["servers"]["s1"]["port"] == 80
    capsys.readouterr()
    assert env.cli("--dry-run") == 0
    assert "= Backend app" in capsys.readouterr().out
    assert env.cli("apply") == 0
    status = json.loads((env.state / "status.json").read_text())
    assert status["result"] == "in-sync" and status["counts"] == {"in-sync": 2}


def test_backends_are_applied_before_the_frontends_that_need_them(env):
    env.write(frontend("web", "app"), backend("app"))
    env.engine().apply()
    assert FileBackends.applied == [("create", "app"), ("create", "web")]


def test_update_shows_field_level_changes(env, capsys):
    env.write(backend("app"))
    env.cli("apply")
    env.write(backend("app", weight=5))
    capsys.readouterr()
    assert env.cli("--dry-run") == 2
    out = capsys.readouterr().out
    assert "~ Backend app" in out
    assert "servers.s1.weight: 1 → 5" in out


def test_hand_made_drift_is_planned_then_corrected(env, capsys):
    env.write(backend("app"))
    env.cli("apply")
    path = env.store / "backend-app.json"
    data = json.loads(path.read_text())
    data["servers"]["s2"]["port"] = 81
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert env.cli("--dry-run") == 2
    out = capsys.readouterr().out
    assert "servers.s2.port: 81 → 80" in out and "drift: changed outside git" in out
    record = env.engine().apply()
    assert [(o.name, o.status) for o in record.objects] == [("app", "drift-corrected")]
    assert json.loads(path.read_text())["servers"]["s2"]["port"] == 80


def test_ignored_runtime_fields_are_not_drift(env):
    env.write(backend("app", extra="  ignore: [weight]\n"))
    env.engine().apply()
    path = env.store / "backend-app.json"
    data = json.loads(path.read_text())
    data["servers"]["s1"]["weight"] = 0  # an operator drained it
    path.write_text(json.dumps(data))
    assert env.engine(dry_run=True).plan().exit_code() == 0


def test_removed_manifest_deletes_only_what_the_agent_created(env):
    env.write(backend("app"), backend("api"), backend("old"))
    env.engine().apply()
    (env.store / "backend-handmade.json").write_text(json.dumps({"balance": "roundrobin", "servers": {}}))
    env.write(backend("app"), backend("api"))
    record = env.engine().apply()
    assert {(o.name, o.status, o.action) for o in record.objects if o.status != "in-sync"} == {("old", "changed", "delete")}
    assert not (env.store / "backend-old.json").exists()
    assert (env.store / "backend-handmade.json").exists()
    assert "Backend/old" not in Inventory(env.state).objects


def test_mass_prune_is_refused_unless_allowed(env, capsys):
    env.write(*(backend(f"b{i}") for i in range(4)))
    env.engine().apply()
    env.write(backend("b0"))
    capsys.readouterr()
    assert env.cli("apply") == 1
    assert "refusing to prune 3 of 4" in capsys.readouterr().out
    assert len(list(env.store.glob("backend-*.json"))) == 4
    assert env.cli("apply", "--allow-mass-prune") == 0
    assert len(list(env.store.glob("backend-*.json"))) == 1


def test_a_failed_change_skips_only_what_depends_on_it(env):
    FileBackends.fail = {"app"}
    env.write(backend("app"), backend("api"), frontend("web", "app"), frontend("admin", "api", port=8081))
    record = env.engine().apply()
    status = {(o.kind, o.name): o.status for o in record.objects}
    assert status == {("Backend", "app"): "failed", ("Backend", "api"): "changed",
                      ("Frontend", "web"): "skipped", ("Frontend", "admin"): "changed"}
    assert record.exit_code() == 1
    assert "told to fail" in next(o.error for o in record.objects if o.name == "app")


def test_an_object_that_never_converges_is_reported_not_retried_forever(env):
    FileBackends.sticky = {"app"}
    env.write(backend("app"))
    record = env.engine(max_passes=3).apply()
    assert [(o.name, o.status) for o in record.objects] == [("app", "not-converging")]
    assert FileBackends.applied.count(("create", "app")) + FileBackends.applied.count(("update", "app")) == 2
    assert record.exit_code() == 1


def test_dry_run_runner_refuses_mutations_even_if_apply_were_called(env):
    env.write(backend("app"))
    engine = env.engine(dry_run=True)
    engine.plan()
    change = Change("Backend", "app", "create", {"balance": "x"}, None)
    with pytest.raises(DryRunViolation):
        engine.reconcilers["Backend"].apply_one(change, engine.node)
    assert list(env.store.iterdir()) == []


def test_json_plan_for_machines(env, capsys):
    env.write(backend("app"))
    env.cli("apply")
    env.write(backend("app", weight=3))
    capsys.readouterr()
    assert env.cli("--dry-run", "-o", "json") == 2
    data = json.loads(capsys.readouterr().out)
    assert data["result"] == "pending"
    (obj,) = data["objects"]
    assert obj["action"] == "update"
    assert {"field": "servers.s1.weight", "observed": 1, "desired": 3} in obj["fields"]


def test_kinds_without_a_reconciler_are_reported_not_skipped(env, capsys, monkeypatch):
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", "reconcilers.not_written_yet:Nope")
    env.write(backend("app"), frontend("web", "app"))
    assert env.cli("--dry-run") == 2
    out = capsys.readouterr().out
    assert "! Frontend web (not-installed)" in out


def test_a_second_apply_waits_for_the_node_lock(env, capsys):
    from controller.state import NodeLock

    env.write(backend("app"))
    with NodeLock(env.state):
        assert env.cli("apply") == 1
    assert "holds" in capsys.readouterr().err


# --- the runner and the writer ---------------------------------------------------------


def test_runner_takes_argv_lists_only_and_redacts_secrets():
    runner = Runner()
    with pytest.raises(TypeError):
        runner.run("echo hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        runner.run(["echo", "pw=s3cr3t-value"], secrets=["s3cr3t-value"])
    result = runner.run(["cat"], input="s3cr3t-value\n", secrets=["s3cr3t-value"])
    assert "s3cr3t-value" not in result.stdout and "<redacted>" in result.stdout
    with pytest.raises(CommandError) as err:
        runner.run(["sh", "-c", "cat >&2; exit 3"], input="s3cr3t-value\n", read_only=True)
    assert "exited 3" in str(err.value) and "s3cr3t-value" not in str(err.value)


def test_runner_in_dry_run_refuses_commands_not_declared_read_only():
    runner = Runner(dry_run=True, recording=True)
    assert runner.run(["true"], read_only=True).rc == 0
    with pytest.raises(DryRunViolation):
        runner.run(["touch", "/tmp/should-not-exist"])
    assert [(r.argv, r.read_only) for r in runner.records] == [(["true"], True), (["touch", "/tmp/should-not-exist"], False)]


def test_runner_timeout_is_an_error_for_people():
    with pytest.raises(CommandError) as err:
        Runner().run(["sleep", "5"], timeout=0.2)
    assert "timed out" in str(err.value)


def test_atomic_writer_installs_only_what_the_validator_accepts(tmp_path):
    node = Node("lb1", Runner())
    target = tmp_path / "app.cfg"
    target.write_text("old\n")
    target.chmod(0o640)

    def refuse(path: Path) -> None:
        Runner().run(["grep", "-q", "^good", str(path)], read_only=True)

    with pytest.raises(CommandError):
        AtomicWriter(node).write(target, "bad\n", validate=refuse)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["app.cfg"]  # no temp file left behind
    assert AtomicWriter(node).write(target, "good\n", validate=refuse) is True
    assert target.read_text() == "good\n" and (target.stat().st_mode & 0o777) == 0o640
    assert AtomicWriter(node).write(target, "good\n") is False  # already there: no write


def test_atomic_writer_refuses_in_dry_run(tmp_path):
    with pytest.raises(DryRunViolation):
        AtomicWriter(Node("lb1", Runner(dry_run=True))).write(tmp_path / "x", "y")
    assert not (tmp_path / "x").exists()


def test_recorder_hook_writes_every_command_of_a_dry_run(env, tmp_path, monkeypatch):
    from tests.readonly_allowlist import allowed

    env.write(backend("app"))
    out = tmp_path / "record.json"
    monkeypatch.setenv("RECONCILE_RECORD", str(out))
    assert env.cli("--dry-run") == 2
    records = json.loads(out.read_text())
    assert all(allowed(r["what"], r["argv"]) for r in records)


class FrontendsAsResources(Reconciler):
    """Turns every Frontend into an object of its own kind, as the Pacemaker reconciler
    turns Pacemaker VirtualIPs into IPaddr2 primitives."""

    kind = "ClusterResource"
    consumes = ("Frontend",)

    def desired(self, tree, node):
        return {self.kind: {f"fe-{m.metadata.name}": Desired({"port": m.spec.bind[0].port})
                for m in tree.on_node("Frontend", node.name)}}

    def observe(self, node):
        return {self.kind: {}}


def test_a_reconciler_runs_for_the_kinds_it_consumes(env, monkeypatch):
    monkeypatch.setitem(reconcilers.REGISTRY, "ClusterResource", f"{__name__}:FrontendsAsResources")
    monkeypatch.delitem(reconcilers.REGISTRY, "ClusterConfig")  # the real owner of ClusterResource's sibling kind
    env.write(backend("app"), frontend("web", "app"))  # no ClusterResource manifest at all
    record = env.engine(dry_run=True).plan()
    assert ("ClusterResource", "fe-web", "create") in {(o.kind, o.name, o.action) for o in record.objects}


def test_the_registry_says_what_each_reconciler_consumes_as_its_class_does():
    for target in set(reconcilers.REGISTRY.values()):
        module, _, name = target.partition(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        assert tuple(reconcilers.CONSUMES[target]) == tuple(cls.consumes), target


def test_a_plan_imports_only_the_reconcilers_the_node_has_something_for(env, monkeypatch):
    import controller.engine

    asked: list[str] = []
    monkeypatch.setattr(controller.engine, "reconciler_class",
                        lambda kind: asked.append(kind) or reconcilers.reconciler_class(kind))
    env.write(backend("app"))
    env.engine(dry_run=True).plan()
    assert "Backend" in asked and not {"Galera", "Mount", "Container", "DomainJoin", "VirtualIP"} & set(asked)


def test_list_changes_are_shown_as_whole_lists():
    from controller.plan import field_changes
    import jsonpatch

    observed = {"groups": ["a", "b", "c"], "n": 1}
    desired = {"groups": ["b", "c", "d"], "n": 2}
    change = Change("DomainJoin", "corp", "update", desired, observed, jsonpatch.make_patch(observed, desired).patch)
    assert field_changes(change) == [("groups", ["a", "b", "c"], ["b", "c", "d"]), ("n", 1, 2)] or \
        sorted(field_changes(change)) == [("groups", ["a", "b", "c"], ["b", "c", "d"]), ("n", 1, 2)]


def test_atomic_writer_removes_temp_files_left_by_a_killed_writer(tmp_path):
    target = tmp_path / "keepalived.conf"
    (tmp_path / ".keepalived.conf.k3j2l1.tmp").write_text("half of a file")
    (tmp_path / ".other.conf.abc.tmp").write_text("not ours to remove")
    AtomicWriter(Node("lb1", Runner())).write(target, "whole\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.conf.abc.tmp", "keepalived.conf"]


class ValidatedBackends(FileBackends):
    calls = 0

    def validate(self, node):
        ValidatedBackends.calls += 1
        return []


def test_native_validation_runs_once_per_tree_content_in_a_process(env, monkeypatch):
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:ValidatedBackends")
    monkeypatch.setattr(ValidatedBackends, "calls", 0)
    env.write(backend("app"))
    env.engine(dry_run=True).plan()
    env.engine().apply()
    env.engine(dry_run=True).plan()
    assert ValidatedBackends.calls == 1
    env.write(backend("app", weight=2))  # new content: validated again
    env.engine(dry_run=True).plan()
    assert ValidatedBackends.calls == 2


class BuggyBackends(FileBackends):
    def apply_one(self, change, node):
        if change.name == "app":
            return {}["no such key"]
        super().apply_one(change, node)


def test_a_bug_in_a_reconciler_fails_its_object_with_a_message_not_the_run(env, monkeypatch, capsys):
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:BuggyBackends")
    env.write(backend("app"), backend("api"), frontend("web", "app"), frontend("admin", "api", port=8081))
    assert env.cli("apply") == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "internal error (KeyError: 'no such key' at test_engine.py:" in out
    assert "= Backend api" not in out and "+ Backend api (applied: create)" in out
    assert "Frontend web (skipped)" in out
