"""`reconcile import` and `reconcile render` follow the conventions of every command: a
usage error exits 1, `-o json` answers with the one envelope (errors included, problems
with file and line), the node is checked against the tree, and a secret never shows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy" / "import"


@pytest.fixture
def host(monkeypatch):
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")


def envelope(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv", [["import", "haproxy"], ["render", "--nodee", "lb1"], ["import", "Bad!", "x.cfg"]])
def test_a_usage_error_of_import_or_render_exits_1(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "reconcile: error:" in err and "usage: reconcile " in err


def test_a_usage_error_in_json_mode_is_the_envelope(capsys):
    assert main(["import", "haproxy", "-o", "json"]) == 1
    data = envelope(capsys)
    assert (data["command"], data["result"], data["exitCode"]) == ("usage", "usage-error", 1)
    assert "give FILE or --live" in data["problems"][0]["message"]


@pytest.mark.parametrize("command", ["import", "render"])
def test_their_help_documents_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:\n  0  " in out and "  1  error:" in out


def test_import_as_json_holds_the_manifests_and_names_the_secret_files(tmp_path, capsys, host):
    code = main(["import", "haproxy", str(FIXTURES / "edge.cfg"), "-o", "json", "--secrets-dir", str(tmp_path)])
    assert code == 0
    data = envelope(capsys)
    assert (data["command"], data["result"], data["exitCode"], data["problems"]) == ("import", "imported", 0, [])
    assert [d["kind"] for d in data["manifests"]][:1] == ["HAProxy"]
    assert all(d["spec"].get("node") == "lb1" for d in data["manifests"])
    assert str(tmp_path / "userlist-admins-alice") in data["secrets"]
    assert any("unnamed defaults section" in n for n in data["notes"])
    text = json.dumps(data)
    assert "Wonder.land7" not in text and "S3cret.Stats" not in text


def test_a_file_import_cannot_express_is_a_problem_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.cfg"
    bad.write_text("global\n\tmaxconn 10\nfrontend\n")
    assert main(["import", "haproxy", str(bad), "--node", "lb1", "-o", "json"]) == 1
    data = envelope(capsys)
    assert (data["command"], data["result"], data["exitCode"]) == ("import", "error", 1)
    assert data["problems"][0] | {"message": ""} == {"file": str(bad), "line": 3, "field": None, "message": ""}
    assert "needs a name" in data["problems"][0]["message"]
    assert main(["import", "haproxy", str(bad), "--node", "lb1"]) == 1
    assert f"reconcile import: {bad}:3: a frontend section needs a name" in capsys.readouterr().err


def repo_with_stats(tmp_path: Path) -> Path:
    secret = tmp_path / "stats-password"
    secret.write_text("Very.Secret9\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "lb.yaml").write_text(f"""\
apiVersion: reconcile/v1
kind: Cluster
metadata: {{name: web}}
spec:
  stack: none
  nodes:
    - {{name: lb1, id: 1, address: 192.0.2.11/24}}
    - {{name: lb2, id: 2, address: 192.0.2.12/24}}
---
apiVersion: reconcile/v1
kind: Backend
metadata: {{name: be_app}}
spec:
  cluster: web
  servers: [{{name: app.1, address: "2001:db8::11", port: 80}}]
---
apiVersion: reconcile/v1
kind: Frontend
metadata: {{name: fe_http-in}}
spec:
  cluster: web
  bind: [{{address: "::", port: 8080}}]
  defaultBackend: be_app
  stats: {{uri: /stats, auth: [{{user: admin, password: {{file: {secret}}}}}]}}
""")
    return repo


def test_render_as_json_gives_the_files_with_secrets_redacted(tmp_path, capsys, host):
    repo = repo_with_stats(tmp_path)
    assert main(["render", "--repo", str(repo), "--node", "lb2", "-o", "json"]) == 0
    data = envelope(capsys)
    assert (data["command"], data["result"], data["exitCode"], data["node"]) == ("render", "rendered", 0, "lb2")
    cfg = data["files"]["/etc/haproxy/haproxy.cfg"]
    assert "frontend fe_http-in" in cfg and "server app.1 [2001:db8::11]:80" in cfg
    assert "stats auth admin:<redacted>" in cfg and "Very.Secret9" not in json.dumps(data)
    assert data["notes"] == ["rendering for lb2 on lb1: the secrets and files it names are read on this machine"]


def test_render_to_a_folder_writes_0600_and_lists_the_paths(tmp_path, capsys, host):
    repo = repo_with_stats(tmp_path)
    out = tmp_path / "out"
    assert main(["render", "--repo", str(repo), "--output-dir", str(out), "-o", "json"]) == 0
    written = envelope(capsys)["written"]
    cfg = out / "etc" / "haproxy" / "haproxy.cfg"
    assert written == [str(cfg)] and cfg.stat().st_mode & 0o777 == 0o600
    assert "stats auth admin:Very.Secret9" in cfg.read_text()  # the file HAProxy would read


def test_render_for_a_node_the_tree_does_not_know_lists_the_known_ones(tmp_path, capsys, host):
    repo = repo_with_stats(tmp_path)
    assert main(["render", "--repo", str(repo), "--node", "lb9"]) == 1
    assert "unknown node 'lb9'" in capsys.readouterr().err
    assert main(["render", "--repo", str(repo), "--node", "lb9", "-o", "json"]) == 1
    data = envelope(capsys)
    assert (data["command"], data["exitCode"]) == ("render", 1) and "names lb1, lb2" in data["problems"][0]["message"]


def test_render_of_an_invalid_tree_is_the_envelope_with_file_and_line(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "b.yaml").write_text("apiVersion: reconcile/v1\nkind: Backend\nmetadata: {name: a}\nspec:\n"
                                 "  nodes: [\"*\"]\n  directives: ['backend evil']\n")
    assert main(["render", "--repo", str(repo), "-o", "json"]) == 1
    data = envelope(capsys)
    assert data["exitCode"] == 1 and data["problems"][0]["file"].endswith("b.yaml")
    assert (data["problems"][0]["line"], data["problems"][0]["field"]) == (6, "spec.directives[0]")
