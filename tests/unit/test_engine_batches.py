"""The batch contract: a reconciler that owns several kinds of one artifact gets all of a
pass's changes at once, reports an outcome per object, and a native refusal is pinned on
the objects it names. Also: a reconciler whose desired() fails plans nothing (above all no
delete), and native checks are remembered on disk across processes.

Driven with a real reconciler of a tiny artifact defined here: one JSON file holding every
Backend and Frontend (as haproxy.cfg holds both), with a "native validator" that refuses
a balance value and names the object, as `haproxy -c` names the section.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import reconcilers
from controller.engine import Engine
from controller.loader import load_tree
from controller.state import read_json
from reconcilers.base import (
    ApplyError, AtomicWriter, Change, Desired, Node, Reconciler, Refusal, Runner, install_batch, native_check,
)
from tests.unit import json_kinds

ARTIFACT = Path("/nonexistent")


def backend(name: str, balance: str = "roundrobin") -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  balance: {balance}\n  servers:\n    - {{name: s1, address: 198.51.100.1, port: 80}}\n")


def frontend(name: str, backend_name: str, port: int = 8080) -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Frontend\nmetadata: {{name: {name}}}\nspec:\n  cluster: web\n"
            f"  bind: [{{address: 127.0.0.1, port: {port}}}]\n  defaultBackend: {backend_name}\n")


class OneFile(Reconciler):
    """Backends and Frontends in one file, written whole once per pass."""

    kinds = ("Backend", "Frontend")
    refuse_balance = "source"  # the "validator" refuses this balance and names the backend
    calls: list[list[tuple[str, str]]] = []  # the batches apply() was given
    installs = 0

    def desired(self, tree, node):
        self.want = {
            "Backend": {m.metadata.name: Desired({"balance": m.spec.balance}) for m in tree.on_node("Backend", node.name)},
            "Frontend": {m.metadata.name: Desired({"backend": m.spec.defaultBackend},
                                                  depends=(("Backend", m.spec.defaultBackend),))
                         for m in tree.on_node("Frontend", node.name)},
        }
        return self.want

    def observe(self, node):
        data = read_json(ARTIFACT, {"Backend": {}, "Frontend": {}})
        self.seen = data
        return data

    def refusals(self, content: dict) -> list[Refusal]:
        out = [Refusal(f"backend {n}: balance {b['balance']} is refused", (("Backend", n),))
               for n, b in content["Backend"].items() if b["balance"] == self.refuse_balance]
        known = set(content["Backend"])
        out += [Refusal(f"frontend {n}: unknown backend {f['backend']}", (("Frontend", n),))
                for n, f in content["Frontend"].items() if f["backend"] not in known]
        return out

    def apply(self, changes, node):
        OneFile.calls.append([c.key for c in changes])

        def attempt(batch: list[Change]) -> list[Refusal]:
            content = {k: dict(v) for k, v in self.seen.items()}
            for c in batch:
                if c.action == "delete":
                    content[c.kind].pop(c.name, None)
                else:
                    content[c.kind][c.name] = c.desired
            refused = self.refusals(content)
            if refused:
                return refused
            AtomicWriter(node).write(ARTIFACT, json.dumps(content))
            OneFile.installs += 1
            return []

        return install_batch(changes, attempt)


class Unplannable(json_kinds.JsonFrontends):
    def desired(self, tree, node):
        raise ApplyError("the tree says something this reconciler cannot compute")


@pytest.fixture
def env(tmp_path, monkeypatch):
    global ARTIFACT
    monkeypatch.setattr(OneFile, "calls", [])
    monkeypatch.setattr(OneFile, "installs", 0)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:OneFile")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:OneFile")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "ARTIFACT", tmp_path / "artifact.json")
    repo = tmp_path / "repo"
    repo.mkdir()

    class Env:
        state = tmp_path / "state"
        artifact = tmp_path / "artifact.json"

        def write(self, *docs: str) -> None:
            (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
            (repo / "lb.yaml").write_text("".join(docs))

        def engine(self, dry_run: bool = False, **kw) -> Engine:
            return Engine(load_tree(repo), Node("lb1", Runner(dry_run=dry_run), self.state), **kw)

        def status(self, record) -> dict[str, str]:
            return {f"{o.kind}/{o.name}": o.status for o in record.objects}

    return Env()


def test_objects_of_one_artifact_are_applied_in_one_batch_and_installed_once(env):
    env.write(*(backend(f"b{i}") for i in range(20)), *(frontend(f"f{i}", f"b{i}", 8000 + i) for i in range(5)))
    record = env.engine().apply()
    assert record.result == "converged"
    assert len(OneFile.calls) == 1 and len(OneFile.calls[0]) == 25
    assert OneFile.installs == 1
    assert record.passes == 2  # apply, then observe again: nothing left


def test_a_refused_object_fails_alone_and_the_rest_of_the_batch_lands(env):
    env.write(backend("good"), backend("bad", balance="source"), frontend("web", "good"))
    # Native validation in validate() is skipped here: the refusal comes at apply time
    # (the node changed since the plan), which install_batch must isolate.
    record = env.engine().apply()
    assert env.status(record) == {"Backend/bad": "failed", "Backend/good": "changed", "Frontend/web": "changed"}
    assert "balance source is refused" in next(o.error for o in record.objects if o.name == "bad")
    assert set(json.loads(env.artifact.read_text())["Backend"]) == {"good"}


def test_a_refusal_that_names_no_object_fails_the_whole_batch():
    changes = [Change("Backend", n, "create", {}, None) for n in ("a", "b")]
    outcomes = install_batch(changes, lambda batch: [Refusal("the file as a whole is broken")])
    assert {k: str(v) for k, v in outcomes.items()} == {("Backend", "a"): "the file as a whole is broken",
                                                        ("Backend", "b"): "the file as a whole is broken"}


def test_install_batch_retries_without_the_named_objects_until_the_rest_passes():
    changes = [Change("Backend", n, "create", {}, None) for n in ("a", "b", "c")]
    seen: list[list[str]] = []

    def attempt(batch):
        seen.append([c.name for c in batch])
        return [Refusal(f"{n} is bad", (("Backend", n),)) for n in ("a", "c") if n in [c.name for c in batch]]

    outcomes = install_batch(changes, attempt)
    assert seen == [["a", "b", "c"], ["b"]]
    assert outcomes[("Backend", "b")] is None
    assert str(outcomes[("Backend", "a")]) == "a is bad" and str(outcomes[("Backend", "c")]) == "c is bad"


class ValidatingOneFile(OneFile):
    def validate(self, node):
        return self.refusals({k: {n: d.state for n, d in v.items()} for k, v in self.want.items()})


def test_a_native_refusal_naming_objects_holds_back_those_and_their_dependents_only(env, monkeypatch):
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:ValidatingOneFile")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:ValidatingOneFile")
    env.write(backend("good"), backend("bad", balance="source"), frontend("web", "good"), frontend("api", "bad", 8081))
    plan = env.engine(dry_run=True).plan()
    assert env.status(plan)["Backend/bad"] == "failed" and plan.exit_code() == 1
    record = env.engine().apply()
    assert env.status(record) == {"Backend/bad": "failed", "Backend/good": "changed",
                                  "Frontend/api": "skipped", "Frontend/web": "changed"}
    errors = {o.name: o.error for o in record.objects}
    assert errors["bad"].startswith("refused by the native validator: backend bad")
    assert errors["api"] == "skipped: Backend/bad failed"


def test_a_refusal_naming_no_object_applies_nothing_of_the_revision(env, monkeypatch):
    class Broken(OneFile):
        def validate(self, node):
            return ["the rendered file does not parse at all"]

    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "Broken", Broken, raising=False)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:Broken")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:Broken")
    env.write(backend("good"))
    record = env.engine().apply()
    assert record.exit_code() == 1 and "does not parse" in record.errors[0]
    assert not env.artifact.exists() and OneFile.calls == []


def test_deletes_join_the_batch_of_their_reconciler(env):
    env.write(backend("a"), backend("b"), frontend("web", "a"))
    env.engine().apply()
    OneFile.calls.clear()
    env.write(backend("a"), backend("c"), frontend("web", "c"))  # b goes, c comes, web moves to c
    record = env.engine().apply()
    assert record.result == "converged"
    assert [sorted(batch) for batch in OneFile.calls] == [
        [("Backend", "b"), ("Backend", "c"), ("Frontend", "web")]]


def test_a_failing_desired_plans_nothing_for_its_kinds_and_never_deletes(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", "tests.unit.test_agent_engine:JsonBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", "tests.unit.json_kinds:JsonFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
    (repo / "lb.yaml").write_text(backend("app") + frontend("web", "app") + frontend("old", "app", 8081))
    node = Node("lb1", Runner(), tmp_path / "state")
    Engine(load_tree(repo), node).apply()
    (repo / "lb.yaml").write_text(backend("app") + frontend("web", "app"))  # "old" leaves git

    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", f"{__name__}:Unplannable")
    record = Engine(load_tree(repo), node).apply()
    status = {f"{o.kind}/{o.name}": (o.status, o.error or "") for o in record.objects}
    assert status["Frontend/web"][0] == "failed" and "cannot compute" in status["Frontend/web"][1]
    assert "Frontend/old" not in status  # not planned for deletion, and not deleted
    assert (store / "frontend-old.json").exists()
    # like a refusal nobody can pin on an object: nothing of the revision is applied
    assert record.exit_code() == 1 and "cannot compute the desired state" in record.errors[0]
    plan = Engine(load_tree(repo), Node("lb1", Runner(dry_run=True), tmp_path / "state")).plan()
    assert {f"{o.kind}/{o.name}": o.status for o in plan.objects} == {"Backend/app": "in-sync",
                                                                      "Frontend/web": "failed"}


def test_a_failing_desired_of_the_first_reconciler_is_reported_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", f"{__name__}:UnplannableCluster")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cluster.yaml").write_text(json_kinds.CLUSTER)
    record = Engine(load_tree(repo), Node("lb1", Runner(dry_run=True), tmp_path / "state")).plan()
    assert record.exit_code() == 1
    assert [(o.kind, o.status) for o in record.objects] == [("Cluster", "failed")]


class UnplannableCluster(json_kinds.GroupCluster):
    def desired(self, tree, node):
        raise ValueError("no address for this node")


def test_native_checks_are_remembered_on_disk_but_not_by_a_dry_run(tmp_path):
    calls: list[str] = []

    def check():
        calls.append("ran")
        return []

    dry = Node("lb1", Runner(dry_run=True), tmp_path / "state")
    assert native_check(dry, "true", "content", check) == []
    assert native_check(dry, "true", "content", check) == []
    assert len(calls) == 2 and not (tmp_path / "state").exists()  # a plan leaves nothing behind
    real = Node("lb1", Runner(), tmp_path / "state")
    native_check(real, "true", "content", check)
    native_check(dry, "true", "content", check)  # remembered, for the next plan too
    native_check(real, "true", "other content", check)
    native_check(Node("lb2", Runner(), tmp_path / "state"), "true", "content", check)
    assert len(calls) == 5


def test_a_refused_check_is_not_remembered(tmp_path):
    real = Node("lb1", Runner(), tmp_path / "state")
    calls: list[str] = []

    def check():
        calls.append("ran")
        return ["refused"]

    assert native_check(real, "true", "x", check) == ["refused"]
    assert native_check(real, "true", "x", check) == ["refused"]
    assert len(calls) == 2


def test_a_reconciler_whose_kinds_the_registry_splits_never_runs(env, monkeypatch):
    # Frontend stays with OneFile, Backend goes to another reconciler: OneFile would write
    # backends into its artifact beside the other's. It must not run at all.
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", "tests.unit.test_agent_engine:JsonBackends")
    env.write(backend("app"), frontend("web", "app"))
    record = env.engine().apply()
    assert record.exit_code() == 1 and "registry gives Backend to another reconciler" in record.errors[0]
    assert OneFile.calls == [] and not env.artifact.exists()
