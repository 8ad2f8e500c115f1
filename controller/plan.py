"""The plan: a JSON-patch diff of normalized desired vs observed state, per object.

An object in `desired` but not observed is a create; in both but different an update; in
`observed`, in the inventory and no longer desired a delete. Pointers in `ignore` (with `*`
matching any one key or index) are removed from both sides before the diff, so run-time
fields never show as drift.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Iterable

import jsonpatch

from reconcilers.base import Change, Desired


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def strip_pointers(doc: Any, pointers: Iterable[str]) -> Any:
    """A copy of `doc` without the fields the pointers name (`*` = any key or index)."""
    pointers = list(pointers)
    if not pointers:
        return doc
    doc = copy.deepcopy(doc)
    for pointer in pointers:
        parts = [_unescape(p) for p in pointer.lstrip("/").split("/")] if pointer not in ("", "/") else []
        _strip(doc, parts)
    return doc


def _strip(node: Any, parts: list[str]) -> None:
    if not parts:
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
        for key in keys:
            if rest:
                _strip(node[key], rest)
            else:
                del node[key]
    elif isinstance(node, list):
        if head == "*":
            indexes = range(len(node))
        elif head.isdigit() and int(head) < len(node):
            indexes = [int(head)]
        else:
            indexes = []
        if rest:
            for i in indexes:
                _strip(node[i], rest)
        else:
            for i in sorted(indexes, reverse=True):
                del node[i]


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def diff_ops(observed: Any, desired: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations that turn `observed` into `desired`: mappings are compared key
    by key, anything else (lists included: people read a list change as the whole list)
    is replaced whole. Linear in the size of the objects, unlike a general JSON diff that
    searches lists for moves."""
    ops: list[dict[str, Any]] = []
    if type(observed) is dict and type(desired) is dict:
        for key in observed:
            if key not in desired:
                ops.append({"op": "remove", "path": f"{path}/{_escape(str(key))}"})
        for key, value in desired.items():
            sub = f"{path}/{_escape(str(key))}"
            if key not in observed:
                ops.append({"op": "add", "path": sub, "value": value})
            elif observed[key] != value:
                ops.extend(diff_ops(observed[key], value, sub))
    elif observed != desired:
        ops.append({"op": "replace", "path": path, "value": desired})
    return ops


def state_hash(state: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def diff_kind(
    kind: str,
    desired: dict[str, Desired],
    observed: dict[str, dict[str, Any]],
    owned: set[str],
    ignore: Iterable[str] = (),
) -> tuple[list[Change], list[str]]:
    """The changes for one kind, and the names already in sync."""
    ignore = tuple(ignore)
    changes: list[Change] = []
    in_sync: list[str] = []
    for name in sorted(desired):
        want = desired[name]
        have = observed.get(name)
        if have is None:
            changes.append(Change(kind, name, "create", want.state, None,
                                  [{"op": "add", "path": "", "value": want.state}], source=want.source))
            continue
        pointers = ignore + tuple(want.ignore)
        a, b = strip_pointers(have, pointers), strip_pointers(want.state, pointers)
        if a == b:
            in_sync.append(name)
            continue
        changes.append(Change(kind, name, "update", want.state, have, diff_ops(a, b), source=want.source))
    for name in sorted(set(observed) - set(desired)):
        if name in owned:
            changes.append(Change(kind, name, "delete", None, observed[name], [{"op": "remove", "path": ""}]))
    return changes, in_sync


def resolve(doc: Any, pointer: str) -> Any:
    try:
        return jsonpatch.JsonPointer(pointer).resolve(doc)
    except (jsonpatch.JsonPointerException, KeyError, IndexError, TypeError):
        return _ABSENT


class _Absent:
    """A field that is not there (unlike one that is null). One instance: copies are it."""

    def __repr__(self) -> str:
        return "(absent)"

    def __copy__(self) -> "_Absent":
        return self

    def __deepcopy__(self, memo: dict) -> "_Absent":
        return self


_ABSENT = _Absent()


def _list_parent(doc: Any, parts: list[str]) -> int | None:
    """How many leading parts of a path lead to the first list on the way, if any."""
    node = doc
    for i, part in enumerate(parts):
        if isinstance(node, list):
            return i
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None


def field_changes(change: Change) -> list[tuple[str, Any, Any]]:
    """(field, observed, desired) triples from an update's patch, for people.

    A change inside a list (an element added, removed or moved) is shown as the whole list
    before and after: jsonpatch's index arithmetic means nothing to a reader.
    """
    out: list[tuple[str, Any, Any]] = []
    seen: set[str] = set()
    observed, desired = change.observed or {}, change.desired or {}
    for op in change.patch:
        parts = [_unescape(p) for p in op["path"].lstrip("/").split("/")] if op["path"] else []
        cut = [n for n in (_list_parent(observed, parts), _list_parent(desired, parts)) if n is not None]
        if cut or op["op"] in ("move", "copy"):
            parts = parts[: min(cut)] if cut else parts[:-1]
        pointer = "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts) if parts else ""
        field = ".".join(parts) if parts else "(whole object)"
        if field in seen:
            continue
        seen.add(field)
        before, after = resolve(observed, pointer), resolve(desired, pointer)
        if sensitive(parts[-1] if parts else "") and not (_token(before) and _token(after)):
            before, after = (b if b is _ABSENT else MASKED for b in (before, after))
        out.append((field, before, after))
    return out


# Words that mark a secret field ("token" is not one: Corosync's token is a timeout).
SECRET_WORDS = ("password", "secret", "authkey", "passphrase", "privatekey", "private_key")
MASKED = "(sensitive value)"
INLINE = 80  # a mapping whose JSON is at most this long is shown on one line


def sensitive(field: str) -> bool:
    """A field whose name says it holds a secret. Secrets never enter desired or observed
    state (the contract), so this is a second guard for what is shown."""
    low = field.lower()
    return any(w in low for w in SECRET_WORDS)


def _token(value: Any) -> bool:
    """A reconciler's stand-in for a secret ("<secret: in sync>"): safe to show."""
    return isinstance(value, str) and value.startswith("<secret")


def _mask(value: Any, path: str) -> Any:
    if sensitive(path.rsplit(".", 1)[-1]) and not _token(value):
        return MASKED
    if isinstance(value, dict):
        return {k: _mask(v, f"{path}.{k}") for k, v in value.items()}
    return value


def create_fields(desired: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """What a create sets, for people (terraform-style): (field, absent, value) per field,
    mappings flattened with dots unless they fit on one line, secrets masked."""
    out: list[tuple[str, Any, Any]] = []
    for key, value in desired.items():
        field = f"{prefix}{key}"
        value = _mask(value, field)
        if isinstance(value, dict) and value and len(json.dumps(value, sort_keys=True)) > INLINE:
            out.extend(create_fields(value, field + "."))
        else:
            out.append((field, _ABSENT, value))
    return out


def show_value(value: Any, limit: int = 100) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) and value and " " not in value else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def list_changes(before: Any, after: Any) -> list[tuple[str, Any]] | None:
    """Element-wise changes between two lists, in order: ("-", removed), ("+", added),
    (" ", kept) around them; None when either side is not a list. Nothing is cut: a
    removed element is always shown."""
    if not isinstance(before, list) or not isinstance(after, list):
        return None
    import difflib

    a = [json.dumps(x, sort_keys=True) for x in before]
    b = [json.dumps(x, sort_keys=True) for x in after]
    out: list[tuple[str, Any]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [(" ", x) for x in before[i1:i2]]
        else:
            out += [("-", x) for x in before[i1:i2]]
            out += [("+", x) for x in after[j1:j2]]
    return out
