"""The command line as an operator meets it: exit codes, usage errors, --version, a closed
pipe, one JSON envelope, which node a run is for, validate for every node, revisions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reconcilers
from controller.cli import EXIT_CODES, main
from controller.loader import load_tree
from reconcilers.base import Desired, PerObject
from tests.unit import json_kinds

RECONCILE = [sys.executable, "-m", "controller.cli"]
CHECKOUT = Path(__file__).resolve().parents[2]


def backend(name: str, placement: str = "cluster: web") -> str:
    return (f"---\napiVersion: reconcile/v1\nkind: Backend\nmetadata: {{name: {name}}}\nspec:\n  {placement}\n"
            f"  servers: [{{name: s1, address: 198.51.100.1, port: 80}}]\n")


class ToolBackends(PerObject):
    """Backends as JSON files whose native validator is a tool that is not installed."""

    kind = "Backend"
    validator: list[str] | None = ["reconcile-test-no-such-validator", "-c"]

    def desired(self, tree, node):
        return {self.kind: {m.metadata.name: Desired({"balance": m.spec.balance})
                            for m in tree.on_node("Backend", node.name)}}

    def observe(self, node):
        return {self.kind: json_kinds.read_objects("backend")}

    def validate(self, node):
        if self.validator:
            node.run(self.validator, read_only=True)
        return []

    def apply_one(self, change, node):
        json_kinds.write_object("backend", change, node)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    json_kinds.use_store(monkeypatch, store)
    monkeypatch.setitem(reconcilers.REGISTRY, "Backend", f"{__name__}:ToolBackends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Frontend", "tests.unit.json_kinds:JsonFrontends")
    monkeypatch.setitem(reconcilers.REGISTRY, "Cluster", "tests.unit.json_kinds:GroupCluster")
    monkeypatch.setattr("controller.engine._VALIDATED", set())  # other tests validated this content
    root = tmp_path / "repo"
    root.mkdir()
    (root / "cluster.yaml").write_text(json_kinds.CLUSTER.replace(
        "    - {name: lb1, id: 1, address: 192.0.2.11/24}\n",
        "    - {name: lb1, id: 1, address: 192.0.2.11/24}\n    - {name: lb2, id: 2, address: 192.0.2.12/24}\n"))
    (root / "lb.yaml").write_text(backend("app"))
    return root


def cli(repo: Path, *args: str) -> int:
    return main([*args, "--repo", str(repo), "--state-dir", str(repo.parent / "state")])


@pytest.fixture
def host(monkeypatch):
    """Say which machine this test runs on (a lab node's host name is its node name)."""
    def be(name: str) -> None:
        monkeypatch.setattr("controller.identity.this_host", lambda: name)
    be("lb1")
    return be


# --- exit codes, usage, version, pipes --------------------------------------------------------


def test_a_usage_error_exits_1_not_2_which_means_pending(capsys):
    assert main(["--dry-run", "--nodee=lb1"]) == 1
    err = capsys.readouterr().err
    assert "reconcile: error: unrecognized arguments: --nodee=lb1" in err and "usage:" in err


def test_a_usage_error_in_json_mode_is_the_json_envelope(capsys):
    assert main(["apply", "--max-passes", "many", "-o", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["command"], data["result"], data["exitCode"]) == ("usage", "usage-error", 1)
    assert data["problems"][0]["file"] is None and "--max-passes" in data["problems"][0]["message"]


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["apply", "--help"], ["validate", "--help"],
                                  ["schema", "--help"], ["explain", "--help"], ["status", "--help"],
                                  ["agent", "--help"], ["lab", "--help"], ["lab", "down", "--help"]])
def test_every_help_documents_the_exit_codes(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "exit codes:" in capsys.readouterr().out


def test_the_plan_help_names_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["apply", "--help"])
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "141"):
        assert f"  {code}" in out
    assert EXIT_CODES in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("reconcile ")


def test_a_closed_pipe_ends_quietly_without_a_traceback():
    proc = subprocess.Popen([*RECONCILE, "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=CHECKOUT)
    proc.stdout.close()  # like `| head` that has read enough: every write now fails
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err


# --- which node -------------------------------------------------------------------------------


def test_apply_for_another_machine_is_refused_and_changes_nothing(repo, host, capsys):
    host("lb2")
    assert cli(repo, "apply", "--node", "lb1") == 1
    err = capsys.readouterr().err
    assert "this host is 'lb2', not 'lb1'" in err and "--dry-run --node lb1" in err
    assert not (repo.parent / "state").exists()


def test_an_unknown_node_is_an_error_that_lists_the_known_ones(repo, host, capsys):
    assert cli(repo, "--dry-run", "--node", "lb9") == 1
    err = capsys.readouterr().err
    assert "unknown node 'lb9'" in err and "names lb1, lb2" in err
    assert cli(repo, "validate", "--node", "lb9", "-o", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["result"] == "refused" and "lb1, lb2" in data["problems"][0]["message"]


def test_a_machine_in_no_placement_is_told_so(repo, host, capsys):
    host("ci-runner")
    assert cli(repo, "apply") == 1
    assert "'ci-runner' is in no placement of the tree" in capsys.readouterr().err
    assert cli(repo, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "note: this machine 'ci-runner' is in no placement" in out and "nothing lands here" in out


def test_manifests_placed_everywhere_land_on_any_machine(repo, host, capsys, monkeypatch):
    (repo / "lb.yaml").write_text(backend("app", 'nodes: ["*"]'))
    monkeypatch.setattr(ToolBackends, "validator", None)
    host("ci-runner")
    assert cli(repo, "--dry-run") == 2
    out = capsys.readouterr().out
    assert "+ Backend app" in out and 'placed on every node (nodes: ["*"]) land here' in out


def test_planning_for_another_node_says_whose_state_is_observed(repo, host, capsys):
    assert cli(repo, "--dry-run", "--node", "lb2") == 2
    assert "planning for lb2 on lb1: what is observed is this machine's state" in capsys.readouterr().out


def test_a_manifest_that_does_not_say_where_it_lands_is_refused_with_file_and_line(repo, capsys):
    (repo / "lb.yaml").write_text(backend("app") + backend("api", "balance: roundrobin"))
    assert cli(repo, "validate") == 1
    err = capsys.readouterr().err
    assert "lb.yaml:12: spec: where this manifest lands is not said" in err
    assert 'spec.nodes (a list, or ["*"] for every node, explicitly)' in err
    assert cli(repo, "--dry-run", "-o", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["problems"][0] | {"message": ""} == {"file": "lb.yaml", "line": 12, "field": "spec", "message": ""}


def test_every_node_is_explicit_alone():
    from pydantic import ValidationError

    from schemas.backend import BackendSpec

    with pytest.raises(ValidationError, match="give it alone"):
        BackendSpec.model_validate({"nodes": ["*", "lb1"], "servers": []})


# --- validate ---------------------------------------------------------------------------------


def test_validate_checks_every_node_of_the_tree_and_says_what_it_skipped(repo, host, capsys):
    host("ci-runner")
    assert cli(repo, "validate", "-o", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["nodes"]) == ["lb1", "lb2"]
    for name in ("lb1", "lb2"):
        (skipped,) = data["nodes"][name]["skipped"]
        assert skipped == (f"Backend: reconcile-test-no-such-validator is not installed on this machine: not "
                           f"checked for {name}")
    assert cli(repo, "validate") == 0
    out = capsys.readouterr().out
    assert "lb2: skipped: Backend: reconcile-test-no-such-validator is not installed" in out
    assert "rendered and natively checked for lb1, lb2" in out


def test_on_the_node_itself_a_missing_validator_is_an_error(repo, host, capsys):
    assert cli(repo, "validate", "--node", "lb1") == 1
    assert "lb1: Backend: `reconcile-test-no-such-validator -c` exited 127" in capsys.readouterr().err


# --- JSON -------------------------------------------------------------------------------------


def test_plan_and_apply_answer_in_one_envelope(repo, host, capsys, monkeypatch):
    monkeypatch.setattr(ToolBackends, "validator", None)
    assert cli(repo, "--dry-run", "-o", "json", "--no-health") == 2
    data = json.loads(capsys.readouterr().out)
    assert (data["apiVersion"], data["command"], data["result"], data["exitCode"]) == \
        ("reconcile/v1", "plan", "pending", 2)
    assert data["problems"] == [] and data["objects"][0]["sync"]["reason"] == "CreatePending"


def test_an_invalid_tree_is_the_envelope_with_structured_problems(repo, capsys):
    (repo / "lb.yaml").write_text(backend("app").replace("port: 80", "port: 70000"))
    assert cli(repo, "validate", "-o", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["command"] == "validate" and data["result"] == "invalid"
    (p,) = data["problems"]
    assert (p["file"], p["line"], p["field"]) == ("lb.yaml", 7, "spec.servers[0].port")


# --- revisions --------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_a_tree_that_differs_from_its_commit_is_dirty(tmp_path):
    root = tmp_path / "repo"
    (root / "manifests").mkdir(parents=True)
    git(root, "init", "-q")
    (root / "manifests" / "cluster.yaml").write_text(json_kinds.CLUSTER)
    (root / "README.md").write_text("x\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    sha = git(root, "rev-parse", "HEAD")
    tree_dir = root / "manifests"
    assert load_tree(tree_dir).revision == sha
    (root / "README.md").write_text("not a manifest\n")
    assert load_tree(tree_dir).revision == sha  # only manifests count
    (tree_dir / "more.yaml").write_text(backend("app"))  # untracked
    assert load_tree(tree_dir).revision == f"{sha}-dirty"
    (tree_dir / "more.yaml").unlink()
    (tree_dir / "cluster.yaml").write_text(json_kinds.CLUSTER + "# edited\n")
    assert load_tree(tree_dir).revision == f"{sha}-dirty"


def test_a_tree_outside_git_is_named_by_its_content(tmp_path):
    (tmp_path / "cluster.yaml").write_text(json_kinds.CLUSTER)
    assert load_tree(tmp_path).revision.startswith("sha256:")


def test_a_machine_taken_out_of_git_prunes_what_it_created(repo, host, capsys, monkeypatch):
    monkeypatch.setattr(ToolBackends, "validator", None)
    assert cli(repo, "apply") == 0
    assert (repo.parent / "store" / "backend-app.json").exists()
    (repo / "lb.yaml").unlink()
    (repo / "cluster.yaml").unlink()  # lb1 is named nowhere now
    assert cli(repo, "apply", "--allow-mass-prune") == 0
    assert "the 1 object(s) reconcile created here are deleted" in capsys.readouterr().out
    assert not (repo.parent / "store" / "backend-app.json").exists()
