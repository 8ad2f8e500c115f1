"""The shared value types (schemas/common.py): one line everywhere, patterns matched whole,
paths in normal form, numbers within what the tools take. Bad input is refused by the whole-
tree loader with file:line and the field, and nothing else goes wrong (no OverflowError)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.loader import TreeError, load_tree
from schemas.common import MultiLineText, Strict, unsafe_character

CONTAINER = """\
apiVersion: reconcile/v1
kind: Container
metadata:
  name: web1
spec:
  node: lb1
  template: busybox
  init: {init}
  files:
    /www/index.html: {content}
  stopTimeout: {stop}
  lxcPath: {lxc}
  limits: {{memory: {memory}}}
"""

JOIN = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata:
  name: corp
spec:
  domain: corp.example.test
  password: {{file: /etc/reconcile/secrets/corp-join.password}}
  homeDirectories:
    pattern: {pattern}
    skel: {skel}
  node: lb1
"""


def container(**changes: str) -> str:
    values = {"init": '[/bin/httpd, -f, -h, /www]', "content": '"<h1>web1</h1>\\n"', "stop": "10s",
              "lxc": "/var/lib/lxc", "memory": "64M", **changes}
    return CONTAINER.format(**values)


def join(pattern: str = "/home/%u", skel: str = "/etc/skel") -> str:
    return JOIN.format(pattern=pattern, skel=skel)


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path)
    return [str(p) for p in err.value.problems]


def test_the_good_manifests_load(tmp_path):
    (tmp_path / "c.yaml").write_text(container())
    (tmp_path / "j.yaml").write_text(join())
    tree = load_tree(tmp_path)
    content = tree.get("Container", "web1").spec.files["/www/index.html"]
    assert isinstance(content, MultiLineText) and content == "<h1>web1</h1>\n"


# --- the four injections of issue 22 ----------------------------------------------------------

def test_init_arguments_with_a_trailing_newline_are_refused(tmp_path):
    found = problems(tmp_path, container(init='[/bin/httpd, "/www\\n", "lxc.rootfs.path=dir:/etc\\n", -f]'))
    assert [p.split(": ", 2)[:2] for p in found] == [["m.yaml:8", "spec.init[1]"], ["m.yaml:8", "spec.init[2]"]]
    assert "'/www\\n': an init argument is one word" in found[0]


def test_a_skel_with_a_trailing_newline_is_refused(tmp_path):
    (found,) = problems(tmp_path, join(skel='"/etc/skel\\n"'))
    assert found.startswith("m.yaml:10: spec.homeDirectories.skel: '/etc/skel\\n': a path may use only")


def test_an_lxc_path_with_a_trailing_newline_is_refused(tmp_path):
    (found,) = problems(tmp_path, container(lxc='"/var/lib/lxc\\n"'))
    assert found.startswith("m.yaml:12: spec.lxcPath: '/var/lib/lxc\\n'")


def test_a_home_pattern_climbing_out_of_home_is_refused(tmp_path):
    (found,) = problems(tmp_path, join(pattern="/home/../etc/%u"))
    assert found == "m.yaml:9: spec.homeDirectories.pattern: '/home/../etc/%u': '..' is not allowed in a path"


# --- one line, for every field ------------------------------------------------------------------

@pytest.mark.parametrize("char, words", [("\n", "a newline"), ("\r", "a carriage return"), ("\x00", "a NUL character"),
                                         ("\x1b", "an escape character (ESC)"), ("\u2028", "U+2028 (LINE SEPARATOR)"),
                                         ("\u2029", "U+2029 (PARAGRAPH SEPARATOR)"), ("\x85", "U+0085 (NEXT LINE)"),
                                         ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"), ("\x7f", "a DEL character"),
                                         ("\ufffe", "U+FFFE")])
def test_a_free_text_value_is_still_one_line(tmp_path, char, words):
    text = """\
apiVersion: reconcile/v1
kind: ClusterResource
metadata: {name: db}
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
  params: {fake: %s}
""" % json.dumps("state" + char)
    found = [p for p in problems(tmp_path, text) if "spec.params" in p]
    if char < " " or char == "\x7f":  # the parameter's own pattern says it first
        assert found == [f"m.yaml:7: spec.params.fake: must be one line of text (no control characters), at most "
                         f"1024 characters (got {'state' + char!r})"]
    else:  # what the pattern lets through, Strict refuses for every field
        assert found == [f"m.yaml:7: spec.params.fake: holds {words} at character 6: a value here is one line of a "
                         "config file or one command argument, so control characters, line separators and invisible "
                         f"format characters are refused (got {'state' + char!r})"]


def test_a_dict_key_is_one_line_too(tmp_path):
    found = problems(tmp_path, container().replace("/www/index.html:", '"/www/\\x1b[2Jx":'))
    assert len(found) == 1 and "spec.files" in found[0]


def test_every_string_of_a_model_is_checked_even_a_plain_str_field():
    class Later(Strict):  # a field someone adds later, with no constraint of its own
        note: str
        tags: dict[str, list[str]] = {}

    Later.model_validate({"note": "fine", "tags": {"a": ["b"]}})
    with pytest.raises(ValidationError) as err:
        Later.model_validate({"note": "x\ny", "tags": {"k\r": ["ok", "v\x00"]}})
    assert sorted(e["loc"] for e in err.value.errors()) == [("note",), ("tags", "k\r"), ("tags", "k\r", 1)]
    assert {e["type"] for e in err.value.errors()} == {"one_line"}


def test_file_content_may_span_lines_but_must_be_text(tmp_path):
    from schemas.container import ContainerSpec

    (tmp_path / "c.yaml").write_text(container(content='"line 1\\r\\nline 2\\n\\ttab \\u2028"'))
    load_tree(tmp_path)
    with pytest.raises(ValidationError, match="unable to parse raw data as a unicode string"):
        ContainerSpec.model_validate({"template": "busybox", "files": {"/x": "a\ud800"}})


def test_unsafe_character_finds_the_first_and_lets_text_through():
    assert unsafe_character("Grüße, 日本, émoji 🙂") is None
    assert unsafe_character("ok\u200bzero-width") == (2, "U+200B (ZERO WIDTH SPACE)")


# --- paths in normal form -------------------------------------------------------------------------

@pytest.mark.parametrize("path, hint", [("/var/lib/lxc/", "'/var/lib/lxc'"), ("/var//lib/lxc", "'/var/lib/lxc'"),
                                        ("/var/./lib/lxc", "'/var/lib/lxc'"), ("//var/lib/lxc", "'/var/lib/lxc'")])
def test_a_path_not_in_normal_form_is_refused_with_its_normal_form(tmp_path, path, hint):
    (found,) = problems(tmp_path, container(lxc=path))
    assert found.startswith(f"m.yaml:12: spec.lxcPath: '{path}': write it in normal form, {hint}")


@pytest.mark.parametrize("pattern", ["/home//%u", "/home/%u/", "/home/./%u", "home/%u"])
def test_a_home_pattern_must_be_an_absolute_normal_path(tmp_path, pattern):
    (found,) = problems(tmp_path, join(pattern=pattern))
    assert found.startswith("m.yaml:9: spec.homeDirectories.pattern:")


# --- numbers within what the tools take -------------------------------------------------------------

@pytest.mark.parametrize("stop", ["9" * 40 + "h", "597h", "2147484s", "99999999999ms"])
def test_a_duration_beyond_haproxys_largest_timer_is_refused_not_an_overflow(tmp_path, stop):
    (found,) = problems(tmp_path, container(stop=stop))
    assert found.startswith("m.yaml:11: spec.stopTimeout: ")
    assert "too long: at most 2147483647 ms" in found or "must be a duration such as" in found


def test_the_longest_duration_is_taken(tmp_path):
    (tmp_path / "c.yaml").write_text(container(stop="596h"))
    load_tree(tmp_path)


@pytest.mark.parametrize("memory, words", [("8589934592G", "more than the kernel's memory limit"),
                                           ("99999999999999G", "is not a memory size"), ("3M", "too small")])
def test_a_memory_limit_is_one_the_kernel_takes(tmp_path, memory, words):
    (found,) = problems(tmp_path, container(memory=memory))
    assert found.startswith("m.yaml:13: spec.limits.memory:") and words in found


def test_scores_cpu_lists_and_intervals_are_bounded(tmp_path):
    text = """\
apiVersion: reconcile/v1
kind: ClusterResource
metadata: {name: db}
spec:
  cluster: web
  agent: ocf:heartbeat:Dummy
  location: [{node: lb1, score: 1000001}]
  operations: [{name: monitor, interval: 600h}]
"""
    found = problems(tmp_path, text)
    assert any(p.startswith("m.yaml:7: spec.location[0].score") for p in found)
    assert any(p.startswith("m.yaml:8: spec.operations[0].interval") and "too long" in p for p in found)
    (found,) = problems(tmp_path, container().replace("limits: {memory: 64M}", "limits: {cpus: '" + ",".join(["0"] * 200) + "'}"))
    assert "is not a CPU list" in found
