"""`reconcile import keepalived`: a file becomes manifests that render it back, every block,
keyword and value kept; secrets become references; what cannot be expressed names its line.

The fixture import-full.conf is the project's own: most of keepalived 2.2's VRRP and LVS,
written the ways operators write them (quoted script arguments, a shell-looking script,
unicast peers with options, a VIP on another device, both address families, a sync group,
LVS with HTTP_GET and MISC_CHECK, an SSL password, include).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.cli import main as cli
from controller.loader import load_tree
from reconcilers.importing import Imported, ImportProblem
from reconcilers.keepalived.fidelity import compare
from reconcilers.keepalived.importer import import_text
from reconcilers.keepalived.render import render_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"
FULL = (FIXTURES / "import-full.conf").read_text()


def write(imported: Imported, folder: Path) -> None:
    """What `reconcile import --output-dir` writes: the manifests, and the secrets (0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keepalived.yaml").write_text(yaml.safe_dump_all(imported.documents, sort_keys=False))
    for path, value in imported.secrets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")


def round_trip(text: str, tmp_path: Path, node: str = "lb1"):
    imported = import_text(text, "keepalived.conf", {"node": node}, tmp_path / "secrets")
    write(imported, tmp_path / "repo")
    tree = load_tree(tmp_path / "repo")
    rendered, _ = render_text(tree, node, Path("/var/lib/reconcile"), lambda ref: Path(ref.file).read_text().strip())
    return imported, rendered.text


def test_import_then_render_keeps_every_block_keyword_and_value(tmp_path):
    imported, text = round_trip(FULL, tmp_path)
    fidelity = compare(FULL, text)
    assert fidelity.total > 100
    assert fidelity.missing == [] and fidelity.keyword_share == 1.0 and fidelity.value_share == 1.0
    kinds = [m["kind"] for m in imported.documents]
    assert kinds == ["Keepalived", "VirtualIP", "VirtualIP", "VirtualServer"]


def test_reconciles_own_additions_are_named_by_the_measure(tmp_path):
    _, text = round_trip(FULL, tmp_path)
    added = compare(FULL, text).added
    assert "track_file reconcile_drain" in added
    assert "vrrp_instance VI_PUB > version 2" in added, "keepalived's default VRRP version is made explicit"
    assert "vrrp_sync_group EDGE > group > VI_PUB_v6" in added, "the IPv6 instance joins its sync group"


def test_passwords_become_references_and_never_enter_the_manifests(tmp_path):
    imported, _ = round_trip(FULL, tmp_path)
    manifests = (tmp_path / "repo" / "keepalived.yaml").read_text()
    assert "s3cr3tpw" not in manifests and "keyp4ss" not in manifests
    secrets = tmp_path / "secrets"
    assert imported.secrets == {secrets / "VI_PUB.auth_pass": "s3cr3tpw", secrets / "ssl.password": "keyp4ss"}
    vi_pub = next(m for m in imported.documents if m["metadata"]["name"] == "VI_PUB")
    assert vi_pub["spec"]["keepalived"]["authentication"]["password"] == {"file": str(secrets / "VI_PUB.auth_pass")}


def test_scripts_become_argv_lists_and_a_shell_looking_one_is_named(tmp_path):
    imported, _ = round_trip(FULL, tmp_path)
    k = imported.documents[0]["spec"]
    assert k["scripts"]["chk_proxy"]["command"] == ["/usr/bin/pgrep", "-x", "haproxy"]
    assert k["scripts"]["chk_pipe"]["command"] == ["ss", "-ltn", "|", "grep", ":80 "], "as keepalived runs it"
    assert any("chk_pipe" in n and "without a shell" in n for n in imported.notes)
    vi_pub = imported.documents[1]["spec"]["keepalived"]
    assert vi_pub["notify"]["master"] == {"command": ["/etc/keepalived/notify.sh", "master", "public side"],
                                          "user": "root"}


def test_defaults_keepalived_assumed_are_written_explicitly(tmp_path):
    text = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    10.0.0.30\n  }\n}\n"
    imported, rendered = round_trip(text, tmp_path)
    [vip] = imported.documents
    ka = vip["spec"]["keepalived"]
    assert (ka["version"], ka["advertInterval"], ka["priority"], ka["multicast"]) == (2, 1, {"lb1": 100}, True)
    assert "unicast_peer" not in rendered and "advert_int 1" in rendered and "version 2" in rendered
    assert compare(text, rendered).missing == []


def test_a_hand_written_file_imports_for_the_node_it_is_from(tmp_path):
    imported, _ = round_trip(FULL, tmp_path, node="edge1")
    assert {m["spec"]["node"] for m in imported.documents} == {"edge1"}
    assert imported.documents[1]["spec"]["keepalived"]["priority"] == {"edge1": 150}


@pytest.mark.parametrize("text, where", [
    ('vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  authentication {\n    auth_type PASS\n  }\n}\n',
     "k.conf:4: authentication"),
    ("vrrp_instance VI_1 {\n  interface eth0\n  virtual_ipaddress {\n    10.0.0.1\n  }\n}\n",
     "k.conf:1: vrrp_instance VI_1: no virtual_router_id"),
    ('vrrp_script chk {\n  interval 2\n}\n', "k.conf:1: vrrp_script chk: no script line"),
    ("vrrp_instance VI_1 {\n  virtual_router_id 51\n  priority high\n}\n", "k.conf:3: priority"),
])
def test_what_cannot_be_expressed_names_file_and_line(text, where, tmp_path):
    with pytest.raises(ImportProblem) as err:
        import_text(text, "k.conf", {"node": "lb1"}, tmp_path)
    assert str(err.value).startswith(where)


def test_a_file_is_one_nodes_and_is_not_imported_for_a_whole_cluster(tmp_path):
    with pytest.raises(ImportProblem, match="k.conf: a keepalived.conf is one node's file"):
        import_text(FULL, "k.conf", {"cluster": "web"}, tmp_path)


def test_two_virtual_servers_of_one_address_and_port_get_two_names(tmp_path):
    text = "virtual_server 192.0.2.80 53 {\n  protocol UDP\n}\nvirtual_server 192.0.2.80 53 {\n  protocol TCP\n}\n"
    imported = import_text(text, "k.conf", {"node": "lb1"}, tmp_path)
    assert [d["metadata"]["name"] for d in imported.documents if d["kind"] == "VirtualServer"] == \
        ["vs_192_0_2_80_53", "vs_192_0_2_80_53_1"]


def test_the_command_line_writes_manifests_and_secrets(tmp_path, capsys):
    conf = tmp_path / "keepalived.conf"
    conf.write_text(FULL)
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    assert cli(["import", "keepalived", str(conf), "--node", "lb1", "--output-dir", str(out),
                "--secrets-dir", str(secrets)]) == 0
    assert "keepalived.yaml: 4 manifests" in capsys.readouterr().out
    docs = list(yaml.safe_load_all((out / "keepalived.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Keepalived", "VirtualIP", "VirtualIP", "VirtualServer"]
    assert (secrets / "VI_PUB.auth_pass").stat().st_mode & 0o777 == 0o600
    assert "s3cr3tpw" not in (out / "keepalived.yaml").read_text()
    assert cli(["import", "keepalived", str(tmp_path / "missing.conf"), "--node", "lb1"]) == 1
    assert "missing.conf" in capsys.readouterr().err


def test_import_problems_in_json_name_file_and_line(tmp_path, capsys):
    conf = tmp_path / "k.conf"
    conf.write_text("vrrp_instance VI_1 {\n  virtual_router_id 51\n  priority high\n}\n")
    assert cli(["import", "keepalived", str(conf), "--node", "lb1", "-o", "json"]) == 1
    problem = json.loads(capsys.readouterr().out)["problems"][0]
    assert (problem["file"], problem["line"]) == (str(conf), 3) and problem["message"].startswith("priority")


def test_render_prints_the_file_a_node_would_get_with_secrets_redacted(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("controller.identity.this_host", lambda: "lb1")
    imported, _ = round_trip(FULL, tmp_path)
    assert cli(["render", "--repo", str(tmp_path / "repo"), "--node", "lb1"]) == 0
    out = capsys.readouterr().out
    assert "# ==> /etc/keepalived/keepalived.conf <==" in out and "vrrp_instance VI_PUB {" in out
    assert "s3cr3tpw" not in out and "auth_pass <redacted>" in out
