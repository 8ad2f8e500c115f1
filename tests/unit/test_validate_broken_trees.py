"""`reconcile validate` refuses every broken tree with file:line and the field, no traceback."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.cli import DEFAULT_REPO, main

BASE = {
    "cluster.yaml": """\
apiVersion: reconcile/v1
kind: Cluster
metadata:
  name: web
spec:
  nodes:
    - {name: lb1, id: 1, address: 192.0.2.11/24}
    - {name: lb2, id: 2, address: 192.0.2.12/24}
  crypto: none
  stonithEnabled: false
""",
    "vip.yaml": """\
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: web-vip
spec:
  cluster: web
  manager: keepalived
  address: 192.0.2.100/24
  keepalived:
    routerId: 51
    priority: {lb1: 150, lb2: 100}
""",
    "lb/backends.yaml": """\
apiVersion: reconcile/v1
kind: Backend
metadata:
  name: app
spec:
  cluster: web
  servers:
    - {name: app1, address: 198.51.100.11, port: 80}
    - {name: app2, address: 198.51.100.12, port: 80}
""",
    "lb/deep/frontends.yaml": """\
apiVersion: reconcile/v1
kind: Frontend
metadata:
  name: web
spec:
  cluster: web
  bind:
    - {address: 192.0.2.100, port: 80}
  defaultBackend: app
""",
}

EXTRA_VIP = """\
---
apiVersion: reconcile/v1
kind: VirtualIP
metadata:
  name: other-vip
spec:
  cluster: web
  manager: keepalived
  address: {address}
  keepalived:
    routerId: {rid}
"""

JOIN = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata:
  name: corp
spec:
  cluster: web
  domain: {domain}
  password: {password}
  sudoGroups: [{group}]
"""

# (name, file, old text, new text (or appended text when old is None), marker on the bad line, field)
PCMK = """\
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: fence1
spec:
  cluster: web
  agent: stonith:fence_ipmilan
  params: {{ip: 192.0.2.201, username: admin, password: {password}}}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: db
spec:
  cluster: web
  agent: ocf:pacemaker:Stateful
  clone: {{promotable: true}}
---
apiVersion: reconcile/v1
kind: ClusterResource
metadata:
  name: vip1
spec:
  cluster: web
  agent: ocf:heartbeat:IPaddr2
  params: {{ip: 192.0.2.50}}
  colocation:
    - {{with: {set_ref}, withRole: {role}}}
"""


CASES = [
    ("bad-yaml", "vip.yaml", "  manager: keepalived", "  manager: [keepalived", "  address:", ""),
    ("wrong-type", "lb/backends.yaml", "port: 80}\n    - {name: app2", 'port: "eighty"}\n    - {name: app2',
     "eighty", "spec.servers[0].port"),
    ("unknown-field", "vip.yaml", "  manager: keepalived", "  manager: keepalived\n  floating: yes", "floating",
     "spec.floating"),
    ("unknown-kind", "vip.yaml", "kind: VirtualIP", "kind: FloatingIP", "kind: FloatingIP", "kind"),
    ("bad-ip", "vip.yaml", "192.0.2.100/24", "192.0.2.300/24", "192.0.2.300", "spec.address"),
    ("port-70000", "lb/deep/frontends.yaml", "port: 80}", "port: 70000}", "70000", "spec.bind[0].port"),
    ("shell-in-name", "lb/backends.yaml", "  name: app\n", "  name: app;rm -rf /\n", "rm -rf", "metadata.name"),
    ("shell-in-server-name", "lb/backends.yaml", "name: app2,", "name: $(reboot),", "reboot", "spec.servers[1].name"),
    ("duplicate-name", "lb/backends.yaml", None,
     "---\napiVersion: reconcile/v1\nkind: Backend\nmetadata:\n  name: app\nspec:\n  cluster: web\n",
     "  name: app\nspec:\n  cluster: web\n", "metadata.name"),
    ("dangling-backend", "lb/deep/frontends.yaml", "defaultBackend: app", "defaultBackend: nope", "nope",
     "spec.defaultBackend"),
    ("conflicting-vips", "vip.yaml", None, EXTRA_VIP.format(address="192.0.2.100/24", rid=52),
     "address: 192.0.2.100/24\n  keepalived:\n    routerId: 52", "spec.address"),
    ("duplicate-router-id", "vip.yaml", None, EXTRA_VIP.format(address="192.0.2.101/24", rid=51),
     "routerId: 51\n", "spec.keepalived.routerId"),
    ("router-id-out-of-range", "vip.yaml", "routerId: 51", "routerId: 300", "routerId", "spec.keepalived.routerId"),
    ("priority-out-of-range", "vip.yaml", "lb1: 150", "lb1: 255", "lb1: 255", "spec.keepalived.priority.lb1"),
    ("vip-outside-subnet", "vip.yaml", "192.0.2.100/24", "198.51.100.100/24", "198.51.100.100", "spec.address"),
    ("wrong-api-version", "vip.yaml", "apiVersion: reconcile/v1", "apiVersion: reconcile/v2", "reconcile/v2",
     "apiVersion"),
    ("unknown-cluster", "lb/backends.yaml", "  cluster: web", "  cluster: db", "cluster: db", "spec.cluster"),
    ("unknown-node", "lb/backends.yaml", "  cluster: web", "  nodes: [lb1, lb9]", "lb9", "spec.nodes[1]"),
    ("two-placements", "lb/backends.yaml", "  cluster: web", "  cluster: web\n  node: lb1", "spec:\n  cluster: web\n  node", "spec"),
    ("duplicate-yaml-key", "vip.yaml", "  manager: keepalived", "  manager: keepalived\n  manager: pacemaker",
     "manager: pacemaker", "spec.manager"),
    ("duplicate-server", "lb/backends.yaml", "name: app2,", "name: app1,", "name: app1, address: 198.51.100.12",
     "spec.servers[1].name"),
    ("bind-without-vip", "lb/deep/frontends.yaml", "address: 192.0.2.100, port", "address: 192.0.2.99, port",
     "192.0.2.99", "spec.bind[0].address"),
    ("duplicate-node-id", "cluster.yaml", "{name: lb2, id: 2,", "{name: lb2, id: 1,", "name: lb2", "spec.nodes[1].id"),
    ("stonith-not-stated", "cluster.yaml", "  stonithEnabled: false\n", "", "spec:", "spec"),
    ("not-a-mapping", "vip.yaml", None, "---\n- just\n- a list\n", "- just", ""),
    ("secret-path-traversal", "join.yaml", None,
     JOIN.format(domain="corp.example.test", password="{file: /etc/reconcile/../shadow}", group="admins"),
     "password:", "spec.password.file"),
    ("secret-relative-path", "join.yaml", None,
     JOIN.format(domain="corp.example.test", password="{file: secrets/pw}", group="admins"),
     "password:", "spec.password.file"),
    ("domain-with-spaces", "join.yaml", None,
     JOIN.format(domain="'corp example.test'", password="{file: /etc/pw}", group="admins"),
     "domain:", "spec.domain"),
    ("group-with-sudo-spec", "join.yaml", None,
     JOIN.format(domain="corp.example.test", password="{file: /etc/pw}", group="'admins ALL=(ALL) ALL'"),
     "sudoGroups", "spec.sudoGroups[0]"),
    ("group-with-newline", "join.yaml", None,
     JOIN.format(domain="corp.example.test", password="{file: /etc/pw}", group='"admins\\nALL"'),
     "sudoGroups", "spec.sudoGroups[0]"),
    ("inline-secret", "join.yaml", None,
     JOIN.format(domain="corp.example.test", password="hunter2-very-secret", group="admins"),
     "password:", "spec.password"),
    # Pacemaker (issue 15): a fence device's password inline, a role Pacemaker does not
    # know, a resource set naming an unknown resource, crypto left unset
    ("fence-password-inline", "pcmk.yaml", None, PCMK.format(password="hunter2", role="Promoted", set_ref="db"),
     "password: hunter2", "spec.params.password"),
    ("unknown-role", "pcmk.yaml", None, PCMK.format(password="{file: /etc/pw}", role="Primary", set_ref="db"),
     "withRole: Primary", "spec.colocation[0].withRole"),
    ("set-names-unknown-resource", "cluster.yaml", "  stonithEnabled: false\n",
     "  stonithEnabled: false\n  constraints:\n    - {type: order, id: o1, sets: [{resources: [ghost]}]}\n",
     "ghost", "spec.constraints[0].sets[0].resources[0]"),
    ("crypto-unset", "cluster.yaml", "  crypto: none\n", "", "spec:", "spec.crypto"),
    ("promoted-role-of-a-plain-resource", "pcmk.yaml", None,
     PCMK.format(password="{file: /etc/pw}", role="Promoted", set_ref="db").replace("  clone: {promotable: true}\n", ""),
     "withRole: Promoted", "spec.colocation[0].withRole"),
    ("resource-id-with-a-space", "pcmk.yaml", None,
     PCMK.format(password="{file: /etc/pw}", role="Promoted", set_ref="db").replace("name: vip1", "name: 'vip 1'"),
     "name: 'vip 1'", "metadata.name"),
    ("two-monitors-one-interval", "pcmk.yaml", None,
     PCMK.format(password="{file: /etc/pw}", role="Promoted", set_ref="db").replace(
         "  clone: {promotable: true}\n", "  clone: {promotable: true}\n  operations:\n"
         "    - {name: monitor, interval: 10s, role: Promoted}\n    - {name: monitor, interval: 10000ms, role: Unpromoted}\n"),
     "interval: 10000ms", "spec.operations[1]"),
    ("two-links-one-node-one", "cluster.yaml", "{name: lb2, id: 2, address: 192.0.2.12/24}",
     "{name: lb2, id: 2, address: 192.0.2.12/24, links: [192.0.2.12, 198.51.100.12]}", "  nodes:", "spec.nodes"),
    ("no-placement", "lb/backends.yaml", "spec:\n  cluster: web\n", "spec:\n", "spec:", "spec"),
    ("section-in-directive", "lb/backends.yaml", "  cluster: web\n",
     "  cluster: web\n  directives: ['backend evil']\n", "directives:", "spec.directives[0]"),
    ("newline-in-directive", "lb/backends.yaml", "  cluster: web\n",
     "  cluster: web\n  directives: [\"option httplog\\nbackend evil\"]\n", "directives:", "spec.directives[0]"),
    ("inline-stats-password", "lb/backends.yaml", "  cluster: web\n",
     "  cluster: web\n  directives: ['stats auth admin:hunter2-very-secret']\n", "directives:",
     "spec.directives[0]"),
    ("bad-ipv6-server", "lb/backends.yaml", "address: 198.51.100.12", "address: '2001:db8::1::2'",
     "2001:db8::1::2", "spec.servers[1].address"),
    ("everywhere-and-a-node", "lb/backends.yaml", "  cluster: web", '  nodes: ["*", lb1]', "nodes:", "spec.nodes"),
]

# Cases an editor's JSON Schema cannot refuse, and why. Every other case must be refused
# by `reconcile schema` as by validate; a case here that the schema starts to refuse fails
# the test too, so this list stays exact.
NOT_FOR_A_SCHEMA = {
    "duplicate-name": "needs the whole tree (names are unique per kind across files)",
    "dangling-backend": "needs the whole tree (the Backend is another document)",
    "conflicting-vips": "needs the whole tree (two documents claim one address)",
    "duplicate-router-id": "needs the whole tree (two documents claim one router id)",
    "vip-outside-subnet": "needs the whole tree (the subnet is the Cluster's)",
    "unknown-cluster": "needs the whole tree",
    "unknown-node": "needs the whole tree (nodes are named by the Cluster)",
    "bind-without-vip": "needs the whole tree (the address must be a VirtualIP's)",
    "duplicate-server": "uniqueness of a property within a list: JSON Schema cannot say it",
    "duplicate-node-id": "uniqueness of a property within a list: JSON Schema cannot say it",
    "duplicate-yaml-key": "YAML, not the schema: yaml-language-server reports duplicate keys itself",
    "set-names-unknown-resource": "needs the whole tree (the resource is another document)",
    "promoted-role-of-a-plain-resource": "needs the whole tree (whether the other resource is promotable)",
    "two-monitors-one-interval": "uniqueness of a property within a list: JSON Schema cannot say it",
    "two-links-one-node-one": "equal lengths of lists in several items: JSON Schema cannot say it",
    "inline-stats-password": "a password inside a directive's words: left to validate (which never echoes it)",
}


def write_tree(root: Path, case: tuple) -> tuple[Path, int]:
    _, file, old, new, marker, _ = case
    files = dict(BASE)
    text = files.get(file, "")
    if old is None:
        text = text + new
    else:
        assert old in text, f"test case does not apply: {old!r}"
        text = text.replace(old, new, 1)
    files[file] = text
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    # the bad line: the last line where the marker starts (marker may span lines)
    idx = text.rfind(marker) if marker else 0
    return root / file, text[:idx].count("\n") + 1


def test_the_base_tree_is_valid(tmp_path, capsys):
    write_tree(tmp_path, ("", "vip.yaml", None, "", "", ""))
    assert main(["validate", "--repo", str(tmp_path), "--no-native"]) == 0


def test_the_embedded_desired_state_is_valid(capsys):
    assert main(["validate", "--repo", str(DEFAULT_REPO), "--no-native"]) == 0
    documents = sum(p.read_text().count("\nkind: ") + p.read_text().startswith("kind: ")
                    for p in DEFAULT_REPO.rglob("*.yaml"))
    assert f"{documents} manifests valid" in capsys.readouterr().out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_broken_tree_is_refused_with_file_line_and_field(case, tmp_path, capsys):
    path, line = write_tree(tmp_path, case)
    rc = main(["validate", "--repo", str(tmp_path), "--no-native"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    rel = str(path.relative_to(tmp_path))
    assert f"{rel}:{line}:" in err, err
    field = case[5]
    if field:
        assert f":{line}: {field}" in err, err
    assert "hunter2" not in out + err  # an inline secret is refused without being shown


def test_dry_run_and_apply_refuse_a_broken_tree_too(tmp_path, capsys):
    write_tree(tmp_path, CASES[4])
    state = tmp_path / "state"
    assert main(["--dry-run", "--repo", str(tmp_path), "--node", "lb1", "--state-dir", str(state)]) == 1
    assert main(["apply", "--repo", str(tmp_path), "--node", "lb1", "--state-dir", str(state)]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert not state.exists()


def test_json_output_of_a_broken_tree(tmp_path, capsys):
    write_tree(tmp_path, CASES[5])
    assert main(["validate", "--repo", str(tmp_path), "--no-native", "-o", "json"]) == 1
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["result"] == "invalid"
    assert any("spec.bind[0].port" in e for e in data["errors"])


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    shutil.rmtree(tmp_path, ignore_errors=True)
    write_tree(tmp_path, CASES[4])
    (tmp_path / "more.yaml").write_text("apiVersion: reconcile/v1\nkind: Nope\nmetadata: {name: x}\nspec: {}\n")
    assert main(["validate", "--repo", str(tmp_path), "--no-native"]) == 1
    err = capsys.readouterr().err
    assert "vip.yaml:" in err and "more.yaml:2: kind" in err


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_an_editor_with_the_json_schema_refuses_what_validate_refuses(case, tmp_path):
    """The constraints validate enforces are exported to `reconcile schema` (patterns,
    ranges, required fields), so yaml-language-server flags the same mistakes."""
    import jsonschema
    import yaml

    from schemas.export import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    write_tree(tmp_path, case)
    refused = []
    for path in sorted(tmp_path.rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            refused.append(f"{path.name}: not YAML")
            continue
        refused += [f"{path.name}: {e.message}" for doc in docs if doc is not None for e in validator.iter_errors(doc)]
    if case[0] in NOT_FOR_A_SCHEMA:
        assert not refused, f"the schema now refuses {case[0]}: take it off NOT_FOR_A_SCHEMA"
    else:
        assert refused, f"validate refuses {case[0]} but an editor with `reconcile schema` accepts it"
