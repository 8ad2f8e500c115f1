"""JSON Schema for editors (yaml-language-server) and other tools."""
from __future__ import annotations

from typing import Any

from schemas import KINDS


def _envelope(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Describe the envelope fields every kind shares (a kind's model only narrows `kind`)."""
    props = schema.get("properties", {})
    props.get("kind", {}).setdefault("description", f"The kind of object: {kind}.")
    return schema


def json_schema(kind: str | None = None) -> dict[str, Any]:
    """The JSON Schema of one kind, or of any manifest (a oneOf keyed by `kind`)."""
    if kind is not None:
        schema = _envelope(kind, KINDS[kind].model_json_schema())
        schema["$id"] = f"https://reconcile.invalid/schemas/v1/{kind}.json"
        return schema
    defs: dict[str, Any] = {}
    one_of = []
    for name, model in KINDS.items():
        sub = _envelope(name, model.model_json_schema(ref_template="#/$defs/{model}"))
        for key, value in sub.pop("$defs", {}).items():
            # Two kinds with a model of one name would silently share one definition.
            if defs.get(key, value) != value:
                raise ValueError(f"two kinds define a different model {key!r}: rename one")
            defs[key] = value
        defs[name] = sub
        one_of.append({"$ref": f"#/$defs/{name}"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://reconcile.invalid/schemas/v1/manifest.json",
        "title": "reconcile manifest",
        "oneOf": one_of,
        "$defs": defs,
    }
