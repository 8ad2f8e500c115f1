"""The loader against hostile input: bounded before it is expanded, plain tags only, every
problem one line with a file and a line, files outside the repository never read."""
from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from controller import loader, tree_files, yaml_lines
from controller.cli import DEFAULT_REPO, main
from controller.loader import Problem, TreeError, load_tree
from controller.yaml_lines import Budget, YamlProblem, documents

ROOT = Path(__file__).resolve().parents[2]

BACKEND = """\
apiVersion: reconcile/v1
kind: Backend
metadata:
  name: app
spec:
  servers:
    - {name: app1, address: 198.51.100.11, port: 80}
  nodes: ["*"]
"""


def problems(root: Path) -> list[Problem]:
    with pytest.raises(TreeError) as err:
        load_tree(root)
    for p in err.value.problems:
        assert "\n" not in str(p) and str(p).isprintable(), str(p)
    return err.value.problems


def only(root: Path) -> Problem:
    [p] = problems(root)
    return p


def yaml_problem(text: str) -> YamlProblem:
    with pytest.raises(YamlProblem) as err:
        list(documents(text, Budget(10**9)))
    return err.value


def alias_bomb() -> str:
    """Nine levels of ten aliases each: 10^10 nodes once expanded, 370 bytes written."""
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        text += f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]\n"
    return text


# --- expansion, depth, size -----------------------------------------------------------------


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    tracemalloc.start()
    try:
        p = only(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert p.file == "bomb.yaml" and 1 <= p.line <= 10
    assert f"more than {yaml_lines.MAX_DOCUMENT_NODES:,} YAML nodes" in p.message
    assert peak < 20 << 20, f"peak {peak / 1e6:.1f} MB while refusing a 400-byte file"


def test_aliases_count_as_what_they_name_across_the_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_TREE_NODES", 1000)
    doc = "a: &a [" + ", ".join(["x"] * 99) + "]\nb: [*a, *a, *a]\n"  # 400 nodes, 100 of them written
    for i in range(3):
        (tmp_path / f"f{i}.yaml").write_text(doc)
    p = next(p for p in problems(tmp_path) if "too many YAML nodes" in p.message)
    assert (p.file, p.line) == ("f2.yaml", 1) and "nothing after this document was read" in p.message


def test_a_small_alias_is_fine_and_a_problem_inside_it_is_at_the_alias_line(tmp_path):
    (tmp_path / "b.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Backend\nmetadata:\n  name: a\n  labels: &l {team: web}\nspec:\n"
        "  servers:\n    - {name: s1, address: &ip 198.51.100.11, port: 80}\n"
        "    - {name: s2, address: *ip, port: 81}\n  nodes: ['*']\n")
    [backend] = load_tree(tmp_path).of_kind("Backend")
    assert [s.address for s in backend.spec.servers] == ["198.51.100.11", "198.51.100.11"]
    with open(tmp_path / "b.yaml", "a") as f:
        f.write("  healthCheck: *l\n")
    p = only(tmp_path)
    assert (p.line, p.field) == (11, "spec.healthCheck.team")


@pytest.mark.parametrize("text, line, message", [
    ("a: &a [*a]\n", 1, "alias *a refers to a node that contains it"),
    ("a: &a {b: {c: *a}}\n", 1, "recursive alias"),
    ("a:\n  - 1\n  - *nowhere\n", 3, "alias *nowhere has no anchor"),
    ("a: &x 1\nb: &x 2\n", 2, "anchor &x is defined twice"),
])
def test_aliases_that_cannot_be_expanded(text, line, message):
    p = yaml_problem(text)
    assert p.line == line and message in p.message


def test_nesting_is_limited_without_recursion_or_a_crash(tmp_path):
    # 100,000 nested lists crashed PyYAML's composer (segmentation fault), and libyaml's
    # scanner is quadratic in the flow depth: the limit is checked as events arrive.
    (tmp_path / "deep.yaml").write_text("apiVersion: reconcile/v1\nkind: Backend\nmetadata:\n  name: "
                                        + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp_path / "block.yaml").write_text("".join(" " * (2 * i) + "- \n" for i in range(200)))
    found = {p.file: p for p in problems(tmp_path)}
    assert found["deep.yaml"].line == 4 and "nested more than 64 levels deep" in found["deep.yaml"].message
    assert found["block.yaml"].line == 65 and "nested more than 64" in found["block.yaml"].message


def test_nesting_up_to_the_limit_is_read():
    depth = yaml_lines.MAX_DEPTH
    [(_, data, _)] = list(documents("[" * depth + "]" * depth, Budget(10**9)))
    for _ in range(depth - 1):
        data = data[0]
    assert data == []
    assert "nested" in yaml_problem("[" * (depth + 1) + "]" * (depth + 1)).message


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:  # 50 MB, sparse: the loader must not read it to refuse it
        f.write(b"secret-content: x\n")
        f.truncate(50_000_000)
    p = only(tmp_path)
    assert (p.file, p.line) == ("big.yaml", 1)
    assert "50,000,000 bytes: over the size limit of 8 MiB a file" in p.message


def test_the_tree_size_and_file_count_are_limited(tmp_path, monkeypatch):
    for i in range(5):
        (tmp_path / f"b{i}.yaml").write_text(BACKEND.replace("name: app\n", f"name: app{i}\n"))
    monkeypatch.setattr(tree_files, "MAX_TREE_BYTES", (len(BACKEND) + 1) * 3)
    p = only(tmp_path)
    assert (p.file, p.line) == ("b3.yaml", 1) and "over the size limit" in p.message and "in all" in p.message
    monkeypatch.setattr(tree_files, "MAX_TREE_BYTES", 1 << 20)
    monkeypatch.setattr(tree_files, "MAX_FILES", 4)
    assert "5 manifest files: more than the 4" in only(tmp_path).message
    monkeypatch.setattr(tree_files, "MAX_ENTRIES", 3)
    assert "more than 3 files and folders" in only(tmp_path).message


def test_a_real_tree_is_far_below_the_limits():
    tree = load_tree(DEFAULT_REPO)
    documents = sum(p.read_text().count("\nkind: ") + p.read_text().startswith("kind: ")
                    for p in DEFAULT_REPO.rglob("*.yaml"))
    assert len(tree.items) == documents >= 13


# --- tags and scalars -----------------------------------------------------------------------


@pytest.mark.parametrize("value, tag", [
    ("!!python/object/apply:os.system [touch /tmp/pwned]", "!!python/object/apply:os.system"),
    ("!!python/name:os.system", "!!python/name:os.system"),
    ("!!set {a, b}", "!!set"),
    ("!!omap [{a: 1}]", "!!omap"),
    ("!!pairs [{a: 1}]", "!!pairs"),
    ("!foo bar", "!foo"),
    ("!foo {a: 1}", "!foo"),
    ("!foo [1]", "!foo"),
    ("!<tag:example.com,2000:thing> x", "tag:example.com,2000:thing"),
    ("!!merge x", "!!merge"),
    ("!!str [1]", "!!str does not fit a list"),
    ("!!map [1]", "!!map does not fit a list"),
    ("!!seq {a: 1}", "!!seq does not fit a mapping"),
    ("!!int {a: 1}", "!!int does not fit a mapping"),
    ("!!seq x", "!!seq does not fit a single value"),
])
def test_only_plain_tags_are_accepted_on_scalars_and_collections(tmp_path, value, tag):
    (tmp_path / "t.yaml").write_text(BACKEND.replace("  servers:", f"  extra: {value}\n  servers:"))
    p = only(tmp_path)
    assert (p.file, p.line, p.field) == ("t.yaml", 6, "spec.extra")
    assert f"YAML tag {tag}" in p.message and ("does not fit" in tag or "is not allowed" in p.message)
    assert not Path("/tmp/pwned").exists()


def test_plain_tags_and_scalars_keep_their_meaning():
    text = ("a: !!str 12\nb: !!int '12'\nc: !!float '1.5'\nd: !!bool true\ne: !!null x\nf: !!map {g: !!seq [1]}\n"
            "h: 2001-12-14\ni: !!binary aGk=\nj: yes\nk: 0x1f\nl: 1_000\nm: ~\nn: '<<'\no: <<\np: =\nq: -7\n")
    [(_, data, _)] = list(documents(text, Budget(10**9)))
    assert data == {"a": "12", "b": 12, "c": 1.5, "d": True, "e": None, "f": {"g": [1]}, "h": "2001-12-14",
                    "i": "aGk=", "j": "yes", "k": 31, "l": 1000, "m": None, "n": "<<", "o": "<<", "p": "=", "q": -7}


@pytest.mark.parametrize("value, message", [
    ("0x_", "'0x_' is not an integer"),
    ("0b_", "'0b_' is not an integer"),
    ("0o_", "Input should be a valid integer (got '0o_')"),  # YAML 1.1 has no 0o: a string
    ("!!int abc", "'abc' is not an integer"),
    ("!!float abc", "'abc' is not a number"),
    ("!!int ''", "'' is not an integer"),
    ("9" * 5000, "has too many digits"),
])
def test_scalars_that_do_not_convert_are_a_problem_with_a_line(tmp_path, value, message):
    (tmp_path / "s.yaml").write_text(BACKEND.replace("port: 80}", f"port: {value}}}"))
    p = only(tmp_path)
    assert (p.file, p.line, p.field) == ("s.yaml", 7, "spec.servers[0].port") and message in p.message


def test_merge_keys_are_refused_where_they_are():
    p = yaml_problem("base: &b {x: 1}\nother:\n  <<: *b\n")
    assert (p.line, p.path, p.message) == (3, ("other",), "YAML merge keys (<<) are not supported")


# --- documents -----------------------------------------------------------------------------


def test_empty_documents_and_a_trailing_separator_are_accepted(tmp_path):
    # as `helm template` and `kubectl get -o yaml` write them
    (tmp_path / "helm.yaml").write_text("---\n# Source: chart/templates/backend.yaml\n" + BACKEND + "---\n---\n...\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing here yet\n---\n")
    assert [i.name for i in load_tree(tmp_path).items] == ["app"]
    assert load_tree(tmp_path).items[0].source.line == 3


@pytest.mark.parametrize("text, line", [
    ("a: b\nc: \x01\n", 2),
    ("é: ü\nçà: b\nc: \x1b\n", 3),  # libyaml says a byte offset: multi-byte characters before it
    ("a: b\r\nc: d\r\ne: \x00\r\n", 3),
    ("a: b\n\nc: [d\n", 4),
])
def test_yaml_errors_have_the_line_not_an_offset(tmp_path, text, line):
    (tmp_path / "x.yaml").write_text(text, newline="")
    p = only(tmp_path)
    assert (p.file, p.line) == ("x.yaml", line) and p.message.startswith("invalid YAML: ")


def test_a_file_that_is_not_utf8_is_a_problem_at_its_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"a: b\nc: caf\xe9\n")
    assert (only(tmp_path).line, "not UTF-8" in only(tmp_path).message) == (2, True)


def test_a_huge_value_is_cut_in_the_problem_line(tmp_path):
    (tmp_path / "k.yaml").write_text(BACKEND.replace("kind: Backend", "kind: " + "X" * 1_000_000))
    assert len(str(only(tmp_path))) < 600


# --- files ---------------------------------------------------------------------------------


def test_a_symlink_out_of_the_repository_is_refused_and_never_read(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("apiVersion: TOP-SECRET-VALUE\nkind: [\n")
    repo = tmp_path / "repo"
    (repo / "lb").mkdir(parents=True)
    (repo / "lb" / "app.yaml").write_text(BACKEND)
    (repo / "shadow.yaml").symlink_to("/etc/shadow")
    (repo / "leak.yaml").symlink_to(outside / "secret.yaml")
    (repo / "folder").symlink_to(outside)
    (repo / "git.yaml").symlink_to(repo / ".git-config")  # inside, but hidden: not a manifest place
    (repo / ".git-config").write_text("url: https://user:TOKEN@example.com\n")
    found = {p.file: p for p in problems(repo)}
    assert set(found) == {"shadow.yaml", "leak.yaml", "folder/", "git.yaml"}
    assert all("leads out of the repository" in p.message for p in found.values())
    assert found["leak.yaml"].line == 1
    assert "TOP-SECRET" not in "\n".join(map(str, found.values())) and "TOKEN" not in str(found)


def test_symlinks_inside_the_repository_are_followed_to_files_only(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "app.yaml").write_text(BACKEND)
    (tmp_path / "alias").symlink_to(tmp_path / "real")  # read once, where it really is
    (tmp_path / "other.yaml").symlink_to("real/app.yaml")  # read through the link: a second Backend app
    p = only(tmp_path)
    assert (p.file, p.field) == ("real/app.yaml", "metadata.name") and "duplicate Backend name 'app'" in p.message


def test_dangling_and_looping_links_are_problems(tmp_path):
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nothing.yaml")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    found = {p.file: p.message for p in problems(tmp_path)}
    assert "a symbolic link to nothing" in found["gone.yaml"] and set(found) == {"gone.yaml", "loop.yaml"}


def test_a_named_pipe_is_refused_without_waiting_for_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    p = only(tmp_path)
    assert (p.file, p.line) == ("pipe.yaml", 1) and "not a regular file" in p.message


def _as_unprivileged(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run Python code without the capabilities that let root read anything (as root), so
    that file permissions apply as they do to an agent's file system."""
    drop = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all"] if os.geteuid() == 0 else []
    return subprocess.run([*drop, sys.executable, "-c", code, str(ROOT), *args], capture_output=True, text=True,
                          timeout=60)


UNPRIVILEGED_LOAD = """
import sys
sys.path.insert(0, sys.argv[1])
from controller.loader import TreeError, load_tree
try:
    load_tree(sys.argv[2])
    print("valid")
except TreeError as err:
    print("\\n".join(str(p) for p in err.problems))
"""


def test_an_unreadable_folder_or_file_is_an_error_not_skipped(tmp_path):
    # Skipped silently, its manifests would vanish and the next apply would prune their objects.
    (tmp_path / "ok.yaml").write_text(BACKEND)
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "b.yaml").write_text(BACKEND.replace("name: app\n", "name: b\n"))
    (tmp_path / "c.yaml").write_text(BACKEND.replace("name: app\n", "name: c\n"))
    os.chmod(tmp_path / "team", 0)
    os.chmod(tmp_path / "c.yaml", 0)
    try:
        out = _as_unprivileged(UNPRIVILEGED_LOAD, str(tmp_path))
    finally:
        os.chmod(tmp_path / "team", 0o755)
        os.chmod(tmp_path / "c.yaml", 0o644)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "team/: cannot read this folder (Permission denied): its manifests would be missing; make it readable "
        "or remove it",
        "c.yaml:1: cannot read (Permission denied)"]


def test_file_names_are_printed_escaped_and_cannot_forge_a_problem_line(tmp_path, capsys):
    forged = "x.yaml:1: all good\n  \x1b[32mok"
    (tmp_path / f"{forged}.yaml").write_text("a: [\n")
    (tmp_path / os.fsdecode(b"caf\xe9.yaml")).write_text("a: [\n")  # not UTF-8: the byte is shown as \xe9
    (tmp_path / "back\\slash.yaml").write_text(BACKEND + '  "new\\nline": 1\n')
    assert main(["validate", "--repo", str(tmp_path), "--no-native"]) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  back\\\\slash.yaml:9: spec.new\\nline: unknown field (not allowed here; check the spelling or the kind's "
        "schema)",
        "  caf\\xe9.yaml:2: invalid YAML: did not find expected node content (while parsing a flow node at line 2)",
        "  x.yaml:1: all good\\n  \\x1b[32mok.yaml:2: invalid YAML: did not find expected node content (while "
        "parsing a flow node at line 2)",
    ]


def test_every_problem_of_a_file_names_a_line(tmp_path):
    (tmp_path / "fifo.yaml").write_text(BACKEND)
    for name, text in {"a.yaml": "a: \x07", "b.yaml": "\ufeffa: [", "c.yaml": "{", "d.yaml": "- !x y",
                       "e.yaml": "a: 0b2", "f.yaml": "? [a]\n: 1\n", "g.yaml": "a: b\na: c\n"}.items():
        (tmp_path / name).write_text(text)
    for p in problems(tmp_path):
        assert p.line >= 1, p
