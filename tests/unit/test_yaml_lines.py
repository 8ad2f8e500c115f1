"""controller/yaml_lines.py reads benign YAML exactly as the composer-based reader it
replaced did (same data, same line per field), on the embedded tree and on a few hundred
seeded mutations of it; it only refuses more (tags other than the plain ones)."""
from __future__ import annotations

import random
from typing import Any

import pytest
import yaml

from controller.yaml_lines import Budget, YamlProblem, documents
from tests.fuzz.mutate import bases, mutate_text

_constructor = yaml.constructor.SafeConstructor()
_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"


class Refused(Exception):
    pass


def reference(text: str) -> list[tuple[int, Any, dict]]:
    """The reader before: PyYAML's composer, then the nodes turned into data (the loader's
    _to_data up to commit bfa9c71), with merge keys, non-string keys and duplicates refused.
    Two relaxations since: a plain `<<` or `=` as a value is its text, and an empty document
    is skipped (a trailing `---`)."""

    def to_data(node, path, lines):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise Refused("merge")
                key = to_data(key_node, path + ("<key>",), {})
                if not isinstance(key, (str, int)) or key in out:
                    raise Refused("key")
                lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = to_data(value_node, path + (key,), lines)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [to_data(item, path + (i,), lines) for i, item in enumerate(node.value)]
        tag, value = node.tag, node.value
        if tag == _STR:
            return value
        if tag == "tag:yaml.org,2002:bool":
            return value if value.lower() not in ("true", "false") else value.lower() == "true"
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
            return value
        if tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
            return value  # a plain `<<` or `=` as a value: refused before, its text now
        return _constructor.construct_object(node, deep=True)

    out = []
    for node in yaml.compose_all(text, Loader=yaml.CSafeLoader):
        lines: dict = {}
        data = to_data(node, (), lines)
        if data is not None:
            out.append((node.start_mark.line + 1, data, lines))
    return out


def texts() -> list[str]:
    """The base trees' files, and mutations of them that stay small and benign (no alias
    bombs, no deep nesting: the reference would not survive those)."""
    out = [t for base in bases() for t in base.values()]
    rng = random.Random(22)
    while len(out) < 400:
        text = rng.choice(out[:20])
        for _ in range(rng.randint(1, 2)):
            text = mutate_text(rng, text)[0]
        if text.count("*") <= 4 and "[[[[[[[[" not in text and "{a: {a: {a: {a:" not in text and len(text) < 50_000:
            out.append(text)
    return out


@pytest.mark.parametrize("start", range(0, 400, 100))
def test_the_same_data_and_lines_as_the_composer_based_reader(start):
    compared = refused_only_here = 0
    for text in texts()[start:start + 100]:
        try:
            expected = reference(text)
        except (yaml.YAMLError, Refused, ValueError, IndexError, RecursionError, UnicodeEncodeError):
            with pytest.raises(YamlProblem):
                list(documents(text, Budget(10**9)))
            continue
        try:
            got = list(documents(text, Budget(10**9)))
        except YamlProblem as err:
            assert "YAML tag" in err.message or "anchor" in err.message, (err.message, text)
            refused_only_here += 1
            continue
        if "*" in text:  # an alias's fields take the alias's line now, not the anchor's
            got, expected = [(line, data) for line, data, _ in got], [(line, data) for line, data, _ in expected]
        assert got == expected, text
        compared += 1
    assert compared >= 20 and refused_only_here <= 10, (compared, refused_only_here)
