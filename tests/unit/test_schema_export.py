"""`reconcile schema` gives editors a JSON Schema that accepts the manifests we accept."""
from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from controller.cli import DEFAULT_REPO, main
from controller.loader import manifest_files


@pytest.fixture(scope="module")
def schema() -> dict:
    from schemas.export import json_schema

    s = json_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def example_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in manifest_files(DEFAULT_REPO):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


def test_the_cli_prints_valid_json_schema(capsys):
    assert main(["schema"]) == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(capsys.readouterr().out))
    assert main(["schema", "Backend"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Backend"
    assert main(["schema", "Nope"]) == 1


@pytest.mark.parametrize("name,doc", example_documents(), ids=[n for n, _ in example_documents()])
def test_every_example_manifest_is_valid_for_an_editor(schema, name, doc):
    jsonschema.validate(doc, schema)


@pytest.mark.parametrize("mistake", ["port 70000", "unknown field", "unknown kind", "bad balance"])
def test_an_editor_flags_common_mistakes(schema, mistake):
    doc = {"apiVersion": "reconcile/v1", "kind": "Backend", "metadata": {"name": "app"},
           "spec": {"cluster": "web", "balance": "roundrobin",
                    "servers": [{"name": "s1", "address": "198.51.100.1", "port": 80}]}}
    if mistake == "port 70000":
        doc["spec"]["servers"][0]["port"] = 70000
    elif mistake == "unknown field":
        doc["spec"]["floating"] = True
    elif mistake == "unknown kind":
        doc["kind"] = "FloatingIP"
    else:
        doc["spec"]["balance"] = "fastest"  # not one of HAProxy's algorithms
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
