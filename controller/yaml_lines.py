"""YAML to plain data with the line of every field, bounded before anything is expanded.

The manifests come from a repository that anyone with commit access can write, and every
node's agent reads them as root: a hostile file must give an error, never a crash, a hang or
a node out of memory. So the data is built here from libyaml's event stream, iteratively
(no recursion, so no RecursionError), and every limit is checked as the events arrive:

- nesting depth (`MAX_DEPTH`): checked on each opening event, so the parser never sees
  more than a few hundred characters past the limit (libyaml's own scanner is quadratic in
  the flow nesting depth, and PyYAML's composer recurses in C: 100,000 `[` crash it);
- expanded nodes per document (`MAX_DOCUMENT_NODES`) and, through a shared `Budget`, per
  tree: an alias counts as many nodes as the node it names, so a 1 KB alias bomb that would
  expand to billions is refused after a few dozen events. An alias shares the object of its
  anchor (it is not copied), and an alias inside its own anchor is refused;
- only plain tags: str, int, float, bool, null, seq, map (timestamp and binary stay strings);
  `!!python/...`, `!!set`, `!!omap`, `!custom` are refused on scalars and collections alike.
  Merge keys (`<<`) are refused, as before: a manifest says each field where it applies.

Every problem is a `YamlProblem` with a line (libyaml's reader reports a byte offset; it is
turned into a line here). The caller turns it into `file:line: message`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

try:  # libyaml: several times faster than the pure-Python parser on 10,000 objects
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]

MAX_DEPTH = 64
"""Nesting levels of lists and mappings. A manifest uses fewer than ten."""
MAX_DOCUMENT_NODES = 200_000
"""Nodes one document may expand to, aliases counted as what they name (a Backend with
5 servers is about 80; one with 10,000 servers about 90,000)."""

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT = _TAG + "str", _TAG + "int", _TAG + "float"
_BOOL, _NULL, _MERGE = _TAG + "bool", _TAG + "null", _TAG + "merge"
_AS_TEXT = (_TAG + "timestamp", _TAG + "binary")  # kept as the text written, as before
_SCALAR_TAGS = frozenset({None, "!", _STR, _INT, _FLOAT, _BOOL, _NULL, *_AS_TEXT})
_SEQ_TAGS = frozenset({None, "!", _TAG + "seq"})
_MAP_TAGS = frozenset({None, "!", _TAG + "map"})

_resolver = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what libyaml counts as a new line


class YamlProblem(Exception):
    """A document that cannot become data: where (1-based line, field path) and why."""

    def __init__(self, line: int, path: Path_, message: str):
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


class OverBudget(YamlProblem):
    """The tree as a whole is over its limit: nothing more of it should be read."""


@dataclass
class Budget:
    """Expanded nodes left for the rest of the tree, shared by every file of one load."""

    nodes: int

    def spend(self, n: int, line: int) -> None:
        self.nodes -= n
        if self.nodes < 0:
            raise OverBudget(line, (), "the tree expands to too many YAML nodes, aliases counted as what they "
                                       "name (a limit that keeps one commit from taking the nodes' memory); "
                                       "nothing after this document was read")


def show_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


class _Open:
    """A list or mapping whose end event has not come yet."""

    __slots__ = ("value", "path", "anchor", "start_count", "key", "has_key", "record")

    def __init__(self, value: Any, path: Path_, anchor: str | None, start_count: int, record: bool, is_map: bool):
        self.value, self.path, self.anchor, self.start_count = value, path, anchor, start_count
        self.key: Any = None
        # None: a list. For a mapping: whether the key of the next value has been read.
        self.has_key: bool | None = False if is_map else None
        self.record = record  # lines are recorded (not inside mapping keys)


def documents(text: str, budget: Budget) -> Iterator[tuple[int, Any, dict[Path_, int]]]:
    """(first line, data, line of each field path) per non-empty document of `text`.

    Raises YamlProblem at the first problem; documents before it were yielded already.
    """
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as err:  # a lone surrogate: text that did not come from UTF-8
        raise YamlProblem(len(_LINE_BREAK.findall(text, 0, err.start)) + 1, (), "not UTF-8 text") from None
    doc = _Document(loader.get_event, budget)
    try:
        while True:
            event = doc.next_event()
            if isinstance(event, yaml.DocumentStartEvent):
                data = doc.build()
                if data is not None:
                    yield data
            elif isinstance(event, yaml.StreamEndEvent):
                return
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = err.problem or err.context or "not YAML"
        if err.context and err.problem and err.context_mark is not None:
            what = f"{what} ({err.context} at line {err.context_mark.line + 1})"
        raise YamlProblem(mark.line + 1 if mark is not None else doc.line, (), f"invalid YAML: {what}") from None
    except yaml.reader.ReaderError as err:  # it says a byte offset: turned into a line
        before = text.encode("utf-8", "surrogateescape")[:err.position].decode("utf-8", "replace")
        raise YamlProblem(len(_LINE_BREAK.findall(before)) + 1, (),
                          f"invalid YAML: {err.reason} (character {err.character:#x})") from None
    except yaml.YAMLError as err:
        raise YamlProblem(doc.line, (), f"invalid YAML: {_first_line(err)}") from None
    except YamlProblem:
        raise
    except Exception as err:  # a limit below us (MemoryError) or a bug here: a line, never a traceback
        raise YamlProblem(doc.line, (), f"cannot read this YAML: {type(err).__name__}: {_first_line(err)}") from err
    finally:
        loader.dispose()


def _first_line(err: Exception) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__


class _Document:
    """Builds the data of one document after another from the event stream."""

    def __init__(self, get_event, budget: Budget):
        self.get_event, self.budget = get_event, budget
        self.line = 1  # of the last event read: where an unexpected error is reported

    def next_event(self) -> yaml.Event:
        event = self.get_event()
        self.line = event.start_mark.line + 1
        return event

    def build(self) -> tuple[int, Any, dict[Path_, int]] | None:
        """The document's data, up to its DocumentEndEvent; None for an empty document."""
        lines: dict[Path_, int] = {}
        anchors: dict[str, tuple[Any, int]] = {}  # name → (value, expanded node count)
        stack: list[_Open] = []
        count = 0  # nodes so far, aliases expanded
        root: Any = None
        first_line = 0
        get_event = self.get_event
        while True:
            event = get_event()
            self.line = line = event.start_mark.line + 1
            cls = type(event)
            if cls is yaml.DocumentEndEvent:
                break
            if cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                closed = stack.pop()
                if closed.anchor is not None:
                    anchors[closed.anchor] = (closed.value, count - closed.start_count)
                value = closed.value
            else:
                parent = stack[-1] if stack else None
                is_key = parent is not None and parent.has_key is False
                if parent is None:
                    path: Path_ = ()
                elif is_key:
                    path = parent.path + ("<key>",)
                elif parent.has_key:
                    path = parent.path + (parent.key,)
                else:
                    path = parent.path + (len(parent.value),)
                if cls is yaml.AliasEvent:
                    value, size = _alias(event.anchor, anchors, stack, line, path)
                    count += size
                else:
                    count += 1
                    anchor = event.anchor
                    if anchor is not None and (anchor in anchors or any(o.anchor == anchor for o in stack)):
                        raise YamlProblem(line, path, f"anchor &{anchor} is defined twice in this document")
                    record = not is_key and (parent is None or parent.record)
                    if record:
                        lines.setdefault(path, line)
                    if parent is None:
                        first_line = line
                    if cls is not yaml.ScalarEvent:  # a list or a mapping opens
                        is_map = cls is yaml.MappingStartEvent
                        if event.tag not in (_MAP_TAGS if is_map else _SEQ_TAGS):
                            raise YamlProblem(line, path, _tag_refused(event.tag, "a mapping" if is_map else "a list"))
                        if len(stack) >= MAX_DEPTH:
                            raise YamlProblem(line, path[:8], f"nested more than {MAX_DEPTH} levels deep")
                        stack.append(_Open({} if is_map else [], path, anchor, count - 1, record, is_map))
                        continue
                    value = _scalar(event, line, path)
                    if anchor is not None:
                        anchors[anchor] = (value, 1)
                if count > MAX_DOCUMENT_NODES:
                    raise YamlProblem(line, path[:8], f"this document expands to more than {MAX_DOCUMENT_NODES:,} "
                                                      "YAML nodes (aliases counted as what they name)")
            # `value` is complete: it is the document's root, a list item, a key or a value.
            if not stack:
                root = value
                continue
            parent = stack[-1]
            if parent.has_key is None:
                parent.value.append("<<" if value is _MERGE_KEY else value)
            elif parent.has_key:
                parent.value[parent.key] = "<<" if value is _MERGE_KEY else value
                parent.has_key = False
            else:
                _check_key(value, parent, line)
                parent.key, parent.has_key = value, True
                if parent.record:
                    lines[parent.path + (value,)] = line
        self.budget.spend(count, first_line or self.line)
        if root is None:
            return None  # an empty document (a trailing `---`, a file of comments): nothing to load
        return first_line, "<<" if root is _MERGE_KEY else root, lines


def _alias(name: str, anchors: dict[str, tuple[Any, int]], stack: list[_Open], line: int,
           path: Path_) -> tuple[Any, int]:
    """The value an alias names (shared, not copied) and how many nodes it counts for."""
    if name in anchors:
        return anchors[name]
    if any(o.anchor == name for o in stack):
        raise YamlProblem(line, path, f"alias *{name} refers to a node that contains it (a recursive alias)")
    raise YamlProblem(line, path, f"alias *{name} has no anchor &{name} before it")


def _check_key(key: Any, parent: _Open, line: int) -> None:
    if key is _MERGE_KEY:
        raise YamlProblem(line, parent.path, "YAML merge keys (<<) are not supported")
    if not isinstance(key, (str, int)):
        raise YamlProblem(line, parent.path, "mapping keys must be strings")
    if key in parent.value:
        raise YamlProblem(line, parent.path + (key,), f"duplicate key {key!r}")


class _MergeKey:
    """A plain `<<`: YAML 1.1's merge key, refused as a key, the text `<<` elsewhere."""


_MERGE_KEY = _MergeKey()


def _tag_refused(tag: str, node: str) -> str:
    if tag in _SCALAR_TAGS | _SEQ_TAGS | _MAP_TAGS:
        return f"YAML tag {show_tag(tag)} does not fit {node}"
    return (f"YAML tag {show_tag(tag)} is not allowed: only plain values (strings, numbers, true/false, null, "
            "lists and mappings)")


def _scalar(event: yaml.ScalarEvent, line: int, path: Path_) -> Any:
    tag, value = event.tag, event.value
    if tag not in _SCALAR_TAGS:
        raise YamlProblem(line, path, _tag_refused(tag, "a single value"))
    if tag is None:
        if not event.implicit[0]:
            return value  # quoted: a string
        tag = _plain_tags.get(value) or _plain_tag(value)
    elif tag == "!":
        tag = _STR
    if tag == _STR:
        return value
    if tag == _INT:
        digits = value.lstrip("-+")
        if digits.isdigit() and not digits.startswith("0") and len(digits) < 20:
            return int(value)  # the common case, without PyYAML's slower constructor
        return _construct(_constructor.construct_yaml_int, value, "an integer", line, path)
    if tag == _FLOAT:
        return _construct(_constructor.construct_yaml_float, value, "a number", line, path)
    if tag == _BOOL:
        low = value.lower()
        return value if low not in ("true", "false") else low == "true"  # yes/no/on/off stay strings
    if tag == _NULL:
        return None
    if tag == _MERGE:
        return _MERGE_KEY
    return value  # timestamp, binary, `=` (YAML 1.1's value key): the text as written


_plain_tags: dict[str, str] = {}  # the same keys and values come back in every manifest


def _plain_tag(value: str) -> str:
    tag = _resolver.resolve(yaml.ScalarNode, value, (True, False))
    if len(value) <= 64 and len(_plain_tags) < 100_000:
        _plain_tags[value] = tag
    return tag


def _construct(construct, value: str, what: str, line: int, path: Path_) -> Any:
    try:
        return construct(yaml.ScalarNode(_STR, value))
    except (ValueError, IndexError, OverflowError, ArithmeticError):
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
        if len(value) > 1000 and value.lstrip("+-").replace("_", "").isdigit():
            raise YamlProblem(line, path, f"{shown} has too many digits") from None
        raise YamlProblem(line, path, f"{shown} is not {what}") from None
