"""`reconcile import haproxy`: manifests that reproduce a haproxy.cfg, and the round trip
import → render keeping every section, name and directive line in order."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.convert import main_import
from controller.loader import load_tree
from reconcilers.base import Node, Runner
from reconcilers.haproxy.config import header_of
from reconcilers.haproxy.importer import EMPTY_DEFAULTS, import_text
from reconcilers.haproxy.process import file_digest
from reconcilers.haproxy.reconciler import HAProxyReconciler
from reconcilers.importing import ImportProblem
from schemas.haproxy_lang import strip_comment

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy" / "import"
NODE = Node("lb1", Runner(dry_run=True))


def sections(text: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        found = header_of(raw)
        if found:
            out.append((" ".join(found).strip(), []))
        elif out and strip_comment(raw):
            out[-1][1].append(strip_comment(raw))
    return out


def round_trip(text: str, tmp_path: Path) -> tuple[str, list[str], list[dict]]:
    imported = import_text(text, "edge.cfg", {"node": "lb1"}, tmp_path / "secrets")
    for path, value in imported.secrets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "haproxy.yaml").write_text(yaml.safe_dump_all(imported.documents, sort_keys=False))
    rec = HAProxyReconciler()
    rec.desired(load_tree(repo), NODE)
    return rec.render(NODE)["/etc/haproxy/haproxy.cfg"], imported.notes, imported.documents


def in_order(lines: list[str], within: list[str]) -> bool:
    it = iter(within)
    return all(any(line == other for other in it) for line in lines)


def test_every_section_name_and_directive_comes_back_in_order(tmp_path: Path) -> None:
    original = (FIXTURES / "edge.cfg").read_text()
    rendered, _, _ = round_trip(original, tmp_path)
    back = dict(sections(rendered))
    for label, lines in sections(original):
        if label == "defaults":  # the unnamed defaults followed by proxies, named for them
            label = next(k for k in back if k.startswith("defaults defaults-line-"))
        assert label in back, label
        assert in_order(lines, back[label]), (label, lines, back[label])
    assert "Wonder.land7" in rendered and "S3cret.Stats" in rendered  # from the secret files


def test_proxies_keep_the_defaults_they_had_by_position(tmp_path: Path) -> None:
    _, notes, documents = round_trip((FIXTURES / "edge.cfg").read_text(), tmp_path)
    specs = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in documents}
    haproxy = specs[("HAProxy", "haproxy")]
    names = [d.get("name") for d in haproxy["defaults"]]
    assert names == [EMPTY_DEFAULTS, "defaults-line-33", "tcp_defaults"]
    assert specs[("Frontend", "Web.Front-1")]["defaults"] == "defaults-line-33"
    assert specs[("Backend", "be_web")]["defaults"] == "defaults-line-33"
    assert specs[("Backend", "early-stats")] == {**specs[("Backend", "early-stats")], "section": "listen",
                                                  "defaults": EMPTY_DEFAULTS}
    assert "defaults" not in specs[("Backend", "pg")]  # it followed the last one
    assert [s["type"] for s in haproxy["sections"]] == ["userlist", "resolvers", "peers", "cache", "http-errors"]
    assert any("gets `from defaults-line-33`" in n for n in notes)


def test_inline_passwords_move_to_secret_files_named_by_reference(tmp_path: Path) -> None:
    imported = import_text((FIXTURES / "edge.cfg").read_text(), "edge.cfg", {"cluster": "web"}, tmp_path)
    text = yaml.safe_dump_all(imported.documents)
    assert "Wonder.land7" not in text and "S3cret.Stats" not in text
    assert imported.secrets == {tmp_path / "userlist-admins-alice": "Wonder.land7",
                                tmp_path / "stats-auth-listen-early-stats-admin": "S3cret.Stats"}
    stats = next(d for d in imported.documents if d["metadata"]["name"] == "early-stats")
    assert {"line": "stats auth admin:((secret))",
            "secret": {"file": str(tmp_path / "stats-auth-listen-early-stats-admin")}} in stats["spec"]["directives"]
    assert all(d["spec"]["cluster"] == "web" for d in imported.documents)
    assert imported.documents[0]["metadata"]["labels"]["imported-from"] == file_digest((FIXTURES / "edge.cfg").read_text())


def test_what_reconcile_adds_is_said(tmp_path: Path) -> None:
    notes = import_text((FIXTURES / "edge.cfg").read_text(), "edge.cfg", {"node": "lb1"}, tmp_path).notes
    assert "reconcile adds `server-state-file` to global (runtime drains and weights survive a reload)" in notes
    assert not any("stats socket" in n for n in notes)  # the file has an admin socket where reconcile wants one
    conflict = "global\n\tstats socket /run/haproxy/admin.sock level user\n"
    notes = import_text(conflict, "c.cfg", {"node": "lb1"}, tmp_path).notes
    assert any(n.startswith("conflict: the file's /run/haproxy/admin.sock is not `level admin`") for n in notes)


@pytest.mark.parametrize("text, line, message", [
    ("\tmaxconn 10\nglobal\n", 1, "stands outside any section"),
    ("global\n.if defined(X)\nfrontend f\n\tbind :80\n.endif\n", 2, "this .if block spans sections"),
    ("frontend f\n.if defined(X)\n\tbind :80\n", 2, "this .if block is never closed"),
    ("listen stats 0.0.0.0:8080\n\tstats enable\n", 1, "an old form HAProxy 2.6 no longer reads"),
    ("backend b\n\tserver a 10.0.0.1\nbackend b\n\tserver c 10.0.0.2\n", 3, "backend 'b' again (first at line 1)"),
    ("frontend fr/ont\n\tbind :80\n", 1, "a name may use only letters, digits and _ . : -"),
    ("backend b\n\tstats auth admin:'quoted pw'\n", 2, "a password in this line is quoted or escaped"),
    ("frontend\n\tbind :80\n", 1, "a frontend section needs a name"),
])
def test_a_file_import_cannot_express_is_refused_naming_the_line(text: str, line: int, message: str,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(ImportProblem) as err:
        import_text(text, "x.cfg", {"node": "lb1"}, tmp_path)
    assert str(err.value).startswith(f"x.cfg:{line}: ") and message in str(err.value)


def test_importing_a_generated_file_drops_reconciles_own_lines(tmp_path: Path) -> None:
    rendered, _, _ = round_trip((FIXTURES / "edge.cfg").read_text(), tmp_path)
    again = import_text(rendered, "haproxy.cfg", {"node": "lb1"}, tmp_path / "again")
    glob = again.documents[0]["spec"]["global"]
    assert not any("server-state-file" in (g if isinstance(g, str) else g["line"]) for g in glob)


def test_directives_that_run_code_are_imported_with_a_note(tmp_path: Path) -> None:
    notes = import_text("global\n\tlua-load /etc/haproxy/x.lua\n", "l.cfg", {"node": "lb1"}, tmp_path).notes
    assert "l.cfg:2: `lua-load /etc/haproxy/x.lua` loads and runs Lua code: a node applies it only if its policy " \
           "allows haproxy capability 'lua' (/etc/reconcile/policy.yaml)" in notes


def test_the_cli_writes_manifests_and_secret_files_0600(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "repo"
    code = main_import(["haproxy", str(FIXTURES / "edge.cfg"), "--node", "lb1", "--output-dir", str(out),
                        "--secrets-dir", str(tmp_path / "secrets")])
    assert code == 0
    assert (out / "haproxy.yaml").read_text().startswith("# Imported by `reconcile import haproxy` from ")
    secret = tmp_path / "secrets" / "userlist-admins-alice"
    assert secret.read_text() == "Wonder.land7\n" and secret.stat().st_mode & 0o777 == 0o600
    assert "edge.cfg:33: an unnamed defaults section" in capsys.readouterr().err
    load_tree(out)  # the manifests are valid as written


def test_tabs_between_words_become_spaces_and_a_tab_inside_quotes_is_refused(tmp_path: Path) -> None:
    imported = import_text("global\n\tmaxconn\t\t500\n\tlog\t127.0.0.1\tlocal0\n", "t.cfg", {"node": "lb1"}, tmp_path)
    assert imported.documents[0]["spec"]["global"] == ["maxconn  500", "log 127.0.0.1 local0"]
    with pytest.raises(ImportProblem) as err:
        import_text('frontend f\n\thttp-request set-header X "a\tb"\n', "t.cfg", {"node": "lb1"}, tmp_path)
    assert str(err.value).startswith("t.cfg:2: a tab inside quotes is part of the value")
