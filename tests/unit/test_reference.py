"""The field reference: generated from the models for whatever kinds exist, every field
described, the same constraints as the JSON Schema, and `reconcile explain`."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.reference import fields_of, markdown
from schemas import KINDS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_of_every_kind_is_described(kind):
    """A new field must say what it is: its description is what `reconcile explain`, the
    reference and an editor's hover show."""
    missing = [d.path for d in fields_of(kind) if not d.description]
    assert not missing, f"{kind}: fields without a description (Field(description=...)): {', '.join(missing)}"


def test_docs_reference_is_generated_from_the_models():
    assert DOCS.read_text() == markdown(), "regenerate: python -m controller.reference > docs/reference.md"


def test_the_reference_gives_types_defaults_and_constraints():
    docs = {d.path: d for d in fields_of("Backend")}
    port = docs["spec.bind[].port"]
    assert (port.type, port.required, port.constraints) == ("integer", True, ["1 ≤ value ≤ 65535"])
    check = docs["spec.healthCheck.type"]
    assert (check.default, check.has_default) == ("tcp", True)
    assert check.type.startswith('"tcp" | "http" | "mysql"')
    assert docs["spec.servers[].port"].type == "integer (or null)"
    assert docs["spec.servers[].address"].constraints == [
        "must be an IPv4 or IPv6 address such as 192.0.2.10 or 2001:db8::10"]
    assert docs["spec.servers[].name"].constraints == ["must be an HAProxy name: letters, digits and _ . : - (at most 255)"]


def test_explain_a_kind_and_a_field(capsys):
    assert main(["explain", "Backend"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("KIND: Backend\n  Backend: an HAProxy backend")
    assert "    servers  <list of Server>" in out
    assert main(["explain", "Backend.spec.healthCheck.fall"]) == 0
    out = capsys.readouterr().out
    assert "FIELD: spec.healthCheck.fall  <integer>" in out and "default: 3" in out
    assert "constraint: 1 ≤ value ≤ 100" in out and "Failed checks in a row" in out


def test_explain_an_unknown_kind_or_field_is_an_error(capsys):
    assert main(["explain", "Nope"]) == 1
    assert "unknown kind 'Nope'" in capsys.readouterr().err
    assert main(["explain", "Backend.spec.nope"]) == 1
    assert "Backend has no field 'spec.nope'" in capsys.readouterr().err
