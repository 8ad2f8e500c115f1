"""`reconcile import keepalived`: a file becomes manifests that render it back, every block,
keyword and value kept; secrets become references; what cannot be expressed names its line.

The fixture import-full.conf is the project's own: most of keepalived 2.2's VRRP and LVS,
written the ways operators write them (quoted script arguments, a shell-looking script,
unicast peers with options, a VIP on another device, both address families, a sync group,
LVS with HTTP_GET and MISC_CHECK, an SSL password, include).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.cli import main as cli
from controller.loader import load_tree
from reconcilers.keepalived.fidelity import compare
from reconcilers.keepalived.importer import ImportError_, import_text, write
from reconcilers.keepalived.render import render_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "keepalived"
FULL = (FIXTURES / "import-full.conf").read_text()


def round_trip(text: str, tmp_path: Path, node: str = "lb1"):
    imported = import_text(text, node)
    write(imported, tmp_path)
    tree = load_tree(tmp_path)

    def secret(ref) -> str:
        return (tmp_path / ".secrets" / Path(ref.file).name).read_text().rstrip("\n")

    rendered, _ = render_text(tree, node, Path("/var/lib/reconcile"), secret)
    return imported, rendered.text


def test_import_then_render_keeps_every_block_keyword_and_value(tmp_path):
    imported, text = round_trip(FULL, tmp_path)
    fidelity = compare(FULL, text)
    assert fidelity.total > 100
    assert fidelity.missing == [] and fidelity.keyword_share == 1.0 and fidelity.value_share == 1.0
    kinds = [m["kind"] for m in imported.manifests]
    assert kinds == ["Keepalived", "VirtualIP", "VirtualIP", "VirtualServer"]


def test_reconciles_own_additions_are_named_by_the_measure(tmp_path):
    _, text = round_trip(FULL, tmp_path)
    added = compare(FULL, text).added
    assert "track_file reconcile_drain" in added
    assert "vrrp_instance VI_PUB > version 2" in added, "keepalived's default VRRP version is made explicit"
    assert "vrrp_sync_group EDGE > group > VI_PUB_v6" in added, "the IPv6 instance joins its sync group"


def test_passwords_become_references_and_never_enter_the_manifests(tmp_path):
    imported, _ = round_trip(FULL, tmp_path)
    manifests = (tmp_path / "keepalived.yaml").read_text()
    assert "s3cr3tpw" not in manifests and "keyp4ss" not in manifests
    assert imported.secrets == {"VI_PUB.auth_pass": "s3cr3tpw", "ssl.password": "keyp4ss"}
    vi_pub = next(m for m in imported.manifests if m["metadata"]["name"] == "VI_PUB")
    assert vi_pub["spec"]["keepalived"]["authentication"]["password"] == \
        {"file": "/etc/reconcile/secrets/keepalived/VI_PUB.auth_pass"}
    secret = tmp_path / ".secrets" / "VI_PUB.auth_pass"
    assert secret.stat().st_mode & 0o777 == 0o600 and (tmp_path / ".secrets" / ".gitignore").read_text() == "*\n"


def test_scripts_become_argv_lists_and_a_shell_looking_one_is_named(tmp_path):
    imported, _ = round_trip(FULL, tmp_path)
    k = imported.manifests[0]["spec"]
    assert k["scripts"]["chk_proxy"]["command"] == ["/usr/bin/pgrep", "-x", "haproxy"]
    assert k["scripts"]["chk_pipe"]["command"] == ["ss", "-ltn", "|", "grep", ":80 "], "as keepalived runs it"
    assert any("chk_pipe" in n and "without a shell" in n for n in imported.notes)
    vi_pub = imported.manifests[1]["spec"]["keepalived"]
    assert vi_pub["notify"]["master"] == {"command": ["/etc/keepalived/notify.sh", "master", "public side"],
                                          "user": "root"}


def test_defaults_keepalived_assumed_are_written_explicitly(tmp_path):
    text = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    10.0.0.30\n  }\n}\n"
    imported, rendered = round_trip(text, tmp_path)
    [vip] = imported.manifests
    ka = vip["spec"]["keepalived"]
    assert (ka["version"], ka["advertInterval"], ka["priority"], ka["multicast"]) == (2, 1, {"lb1": 100}, True)
    assert "unicast_peer" not in rendered and "advert_int 1" in rendered and "version 2" in rendered
    assert compare(text, rendered).missing == []


def test_a_hand_written_file_imports_for_the_node_it_is_from(tmp_path):
    imported, _ = round_trip(FULL, tmp_path, node="edge1")
    assert {m["spec"]["node"] for m in imported.manifests} == {"edge1"}
    assert imported.manifests[1]["spec"]["keepalived"]["priority"] == {"edge1": 150}


@pytest.mark.parametrize("text, where", [
    ('vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  authentication {\n    auth_type PASS\n  }\n}\n',
     "line 4: authentication"),
    ("vrrp_instance VI_1 {\n  interface eth0\n  virtual_ipaddress {\n    10.0.0.1\n  }\n}\n", "line 1: vrrp_instance VI_1: no virtual_router_id"),
    ('vrrp_script chk {\n  interval 2\n}\n', "line 1: vrrp_script chk: no script line"),
    ("vrrp_instance VI_1 {\n  virtual_router_id 51\n  priority high\n}\n", "line 3: priority"),
])
def test_what_cannot_be_expressed_names_its_line(text, where):
    with pytest.raises(ImportError_) as err:
        import_text(text, "lb1")
    assert str(err.value).startswith(where)


def test_the_command_line_writes_manifests_and_secrets(tmp_path, capsys):
    conf = tmp_path / "keepalived.conf"
    conf.write_text(FULL)
    out = tmp_path / "out"
    assert cli(["import", "keepalived", str(conf), "--node", "lb1", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "never commit them" in printed.out
    docs = list(yaml.safe_load_all((out / "keepalived.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Keepalived", "VirtualIP", "VirtualIP", "VirtualServer"]
    assert cli(["import", "keepalived", str(tmp_path / "missing.conf"), "--node", "lb1"]) == 1
    assert "missing.conf" in capsys.readouterr().err


def test_render_prints_the_file_a_node_would_get_with_secret_references(tmp_path, capsys):
    write(import_text(FULL, "lb1"), tmp_path)
    assert cli(["render", "--repo", str(tmp_path), "--node", "lb1"]) == 0
    out = capsys.readouterr().out
    assert "==> /etc/keepalived/keepalived.conf <==" in out and "vrrp_instance VI_PUB {" in out
    assert "s3cr3tpw" not in out and 'auth_pass "<secret file:/etc/reconcile/secrets/keepalived/VI_PUB.auth_pass>"' in out
