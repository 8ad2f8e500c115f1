"""`reconcile import lxc|domain` and `reconcile render`: every setting of the original kept
(typed where the model has meaning, as a validated line or option otherwise), LXC 2 names
translated, passwords moved to files by reference, what reconcile adds named, and a file
that cannot be expressed refused with file:line."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main as cli
from controller.loader import Loaded, Source, Tree, check_tree, load_tree, parse_document
from reconcilers.domain import files, sssd
from reconcilers.domain.importer import import_files
from reconcilers.importing import ImportProblem
from reconcilers.lxc.config import CgroupLayout, config_lines, render_block
from reconcilers.lxc.importer import import_text
from reconcilers.lxc.model import desired_state, render_settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
V1 = CgroupLayout(frozenset({"memory", "cpuset", "cpu", "devices"}))

LXC2 = """\
# an LXC 2 config, as older guides publish them
lxc.utsname = web1
lxc.rootfs = /srv/lxc/web1/rootfs
lxc.network.type = veth
lxc.network.link = br0
lxc.network.flags = up
lxc.network.hwaddr = 00:16:3E:AA:BB:01
lxc.network.ipv4 = 10.0.3.2/24 10.0.3.255
lxc.network.ipv4.gateway = 10.0.3.1
lxc.network.type = macvlan
lxc.network.link = eth1
lxc.network.macvlan.mode = bridge
lxc.cgroup.devices.deny = a
lxc.cgroup.devices.allow = c 1:3 rwm
lxc.cap.drop = sys_module sys_time
lxc.environment = DB_PASSWORD=hunter2
lxc.environment = TERM=xterm
lxc.tty = 4
lxc.cgroup.memory.limit_in_bytes = 268435456
lxc.rootfs.backend = dir
"""


def loaded(doc: dict) -> Tree:
    manifest = parse_document(doc, Source("imported.yaml", 1, {}))
    assert not isinstance(manifest, list), [str(p) for p in manifest]
    tree = Tree(Path("/nonexistent"), [Loaded(manifest, Source("imported.yaml", 1, {}))], "t")
    assert check_tree(tree) == []
    return tree


def test_an_lxc2_config_imports_with_every_setting_and_says_what_it_translated(tmp_path):
    imported = import_text(LXC2, "/var/lib/lxc/web1/config", {"node": "lb1"}, tmp_path, state="running")
    (doc,) = imported.documents
    spec = loaded(doc).get("Container", "web1").spec
    assert spec.adopt and spec.hostname == "web1" and spec.rootfs == "/srv/lxc/web1/rootfs"
    first, second = spec.interfaces()
    assert (first.type, first.bridge, first.mac, first.addresses, first.gateway) == \
        ("bridge", "br0", "00:16:3E:AA:BB:01", ["10.0.3.2/24 10.0.3.255"], "10.0.3.1")
    assert (second.type, second.link, second.options) == ("macvlan", "eth1", {"macvlan.mode": "bridge"})
    assert spec.config == ["lxc.tty.max = 4"]
    assert spec.environment["TERM"] == "xterm" and spec.environment["DB_PASSWORD"].file == str(tmp_path / "web1-db_password")
    assert imported.secrets == {tmp_path / "web1-db_password": "hunter2"}
    assert any("2: lxc.utsname is LXC 2's name: written as lxc.uts.name" in n for n in imported.notes)
    assert any("lxc.rootfs.backend = dir: dropped" in n for n in imported.notes)
    # rendered back, LXC reads the same settings (LXC 3 names), secret apart
    state = desired_state("web1", spec)
    rendered = dict.fromkeys(f"{k} = {v}" for k, v in config_lines(
        render_block("web1", None, 10, render_settings("web1", state, V1, secret=lambda var: "hunter2"))))
    for line in ["lxc.uts.name = web1", "lxc.rootfs.path = dir:/srv/lxc/web1/rootfs", "lxc.net.0.link = br0",
                 "lxc.net.0.ipv4.address = 10.0.3.2/24 10.0.3.255", "lxc.net.0.ipv4.gateway = 10.0.3.1",
                 "lxc.net.1.type = macvlan", "lxc.net.1.macvlan.mode = bridge", "lxc.cgroup.devices.deny = a",
                 "lxc.cap.drop = sys_time", "lxc.environment = DB_PASSWORD=hunter2", "lxc.tty.max = 4",
                 "lxc.cgroup.memory.limit_in_bytes = 256M"]:
        assert line in rendered, line


def test_a_line_lxc_cannot_read_is_refused_with_its_line(tmp_path):
    with pytest.raises(ImportProblem, match=r"^c1.conf:3: 'garbage' is not `key = value`"):
        import_text("lxc.uts.name = a\n\ngarbage\n", "c1.conf", {"node": "lb1"}, tmp_path)
    with pytest.raises(ImportProblem, match=r"^c1.conf:1: lxc.rootfs.path: a lvm root file system"):
        import_text("lxc.rootfs.path = lvm:/dev/vg/c1\n", "c1.conf", {"node": "lb1"}, tmp_path)


def test_a_value_cleared_later_is_named_and_left_out(tmp_path):
    text = "lxc.mount.entry = /a a none bind 0 0\nlxc.mount.entry =\nlxc.mount.entry = /b b none bind 0 0\n"
    imported = import_text(text, "/var/lib/lxc/c2/config", {"node": "lb1"}, tmp_path)
    spec = imported.documents[0]["spec"]
    assert [m["source"] for m in spec["mounts"]] == ["/b"] and spec["config"] == ["lxc.mount.entry ="]
    assert any("2: lxc.mount.entry = clears 1 earlier value(s)" in n for n in imported.notes)


def test_reconcile_import_lxc_prints_manifests_the_loader_accepts(tmp_path, capsys):
    (tmp_path / "app3").mkdir()
    (tmp_path / "app3" / "config").write_text((FIXTURES / "lxc" / "config-by-hand-app3").read_text())
    assert cli(["import", "lxc", str(tmp_path / "app3" / "config"), "--node", "lb1", "--output-dir", str(tmp_path / "out"),
                "--secrets-dir", str(tmp_path / "s")]) == 0
    tree = load_tree(tmp_path / "out")
    assert tree.get("Container", "app3").spec.adopt is True
    assert "state: running is assumed" in capsys.readouterr().err


# --- sssd.conf, sudoers, krb5.conf, PAM -------------------------------------------------------------

SSSD = """\
[sssd]
domains = corp.example.test
config_file_version = 2
services = nss, pam

[nss]
filter_users = root

[domain/corp.example.test]
ad_domain = corp.example.test
krb5_realm = CORP.EXAMPLE.TEST
realmd_tags = manages-system joined-with-adcli
id_provider = ad
access_provider = ad
ad_access_filter = (memberOf=CN=ops,CN=Users,DC=corp,DC=example,DC=test)
ad_server = dc1.corp.example.test, dc2.corp.example.test
use_fully_qualified_names = True
fallback_homedir = /home/%u@%d
ldap_default_bind_dn = CN=reader,CN=Users,DC=corp,DC=example,DC=test
ldap_default_authtok = Bind.Pass-1
cache_credentials = True
"""


def test_an_sssd_conf_imports_typed_and_carried_options_and_renders_back(tmp_path):
    imported = import_files(("sssd.conf", SSSD), {"node": "lb1"}, tmp_path,
                            [("sudoers", "%ops@corp.example.test ALL=(root) NOPASSWD: /usr/bin/id, /usr/bin/w\n")],
                            None, ("common-session", "session optional pam_mkhomedir.so skel=/etc/skel umask=077\n"))
    (doc,) = imported.documents
    spec = loaded(doc).get("DomainJoin", "corp").spec
    assert spec.adServers == ["dc1.corp.example.test", "dc2.corp.example.test"] and spec.accessProvider == "ad"
    assert spec.fullyQualifiedNames is True and spec.homeDirectories.pattern == "/home/%u@%d"
    assert spec.options["domain"]["ldap_default_authtok"].file == str(tmp_path / "domain-corp.example.test-ldap_default_authtok")
    assert imported.secrets[tmp_path / "domain-corp.example.test-ldap_default_authtok"] == "Bind.Pass-1"
    assert spec.sudo[0].noPassword and spec.sudo[0].commands == ["/usr/bin/id", "/usr/bin/w"]
    assert spec.homeDirectories.umask == "0077" and any("umask=077 is written umask=0077" in n for n in imported.notes)
    a = files.render("corp", spec, "lb1")
    back = sssd.as_dict(sssd.parse_ini(sssd.render_sssd_conf("corp", spec, a.computer, secret=lambda ref: "Bind.Pass-1")))
    original = sssd.as_dict(sssd.parse_ini(SSSD))
    for section, options in original.items():
        for key, value in options.items():
            got = back[section][key]
            assert got == value or got.lower() == value.lower() or \
                sssd.split_list(got) == sssd.split_list(value), (section, key)
    assert set(back["domain/corp.example.test"]) - set(original["domain/corp.example.test"]) == \
        {"krb5_keytab", "ldap_sasl_authid"}  # what reconcile's adcli join adds, named in the notes


def test_one_join_is_one_domain(tmp_path):
    text = SSSD.replace("domains = corp.example.test", "domains = corp.example.test, other.test")
    with pytest.raises(ImportProblem, match=r"^sssd.conf:2: domains lists 2 sssd domains"):
        import_files(("sssd.conf", text), {"node": "lb1"}, tmp_path)


def test_a_realm_join_without_sssd_conf_is_what_realm_join_writes(tmp_path):
    imported = import_files(None, {"node": "lb1"}, tmp_path, [("s", "%sudo@rdvm.local ALL=(ALL:ALL) ALL\n")],
                            domain="rdvm.local", user="ryan")
    spec = loaded(imported.documents[0]).get("DomainJoin", "corp").spec
    assert (spec.domain, spec.user, spec.fullyQualifiedNames, spec.sudoGroups) == \
        ("rdvm.local", "ryan", True, ["sudo@rdvm.local"])
    assert r"%sudo\@rdvm.local ALL=(ALL:ALL) ALL" in files.render("corp", spec, "lb1").sudoers


def test_krb5_conf_imports_the_realm_pinning(tmp_path):
    krb5 = ("[libdefaults]\n default_realm = CORP.EXAMPLE.TEST\n dns_lookup_kdc = false\n ticket_lifetime = 10h\n"
            "[realms]\n CORP.EXAMPLE.TEST = {\n  kdc = dc1.corp.example.test\n  kdc = dc2.corp.example.test\n"
            "  admin_server = dc1.corp.example.test\n }\n")
    imported = import_files(("sssd.conf", SSSD), {"node": "lb1"}, tmp_path, [], ("krb5.conf", krb5))
    spec = loaded(imported.documents[0]).get("DomainJoin", "corp").spec
    assert spec.krb5.kdcs == ["dc1.corp.example.test", "dc2.corp.example.test"] and spec.krb5.dnsLookupKdc is False
    assert spec.krb5.libdefaults == {"ticket_lifetime": "10h"}
    with pytest.raises(ImportProblem, match=r"\[logging\]"):
        import_files(("sssd.conf", SSSD), {"node": "lb1"}, tmp_path, [], ("krb5.conf", krb5 + "[logging]\n a = b\n"))


def test_reconcile_render_prints_the_files_a_node_would_get(tmp_path, capsys):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "j.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: DomainJoin\nmetadata: {name: corp}\nspec:\n  node: lb1\n"
        "  domain: corp.example.test\n  password: {file: /etc/reconcile/secrets/p}\n  sudoGroups: [ops]\n"
        "---\napiVersion: reconcile/v1\nkind: Container\nmetadata: {name: app1}\nspec:\n  node: lb1\n"
        "  template: busybox\n  environment: {TOKEN: {env: APP_TOKEN}}\n")
    assert cli(["render", "--repo", str(tmp_path / "tree"), "--node", "lb1"]) == 0
    out = capsys.readouterr().out
    assert "==> /etc/sssd/sssd.conf <==" in out and "==> /etc/sudoers.d/reconcile-corp <==" in out
    assert "==> /var/lib/lxc/app1/config <==" in out and "lxc.environment = TOKEN=<secret: env:APP_TOKEN>" in out


def test_a_config_reconcile_wrote_imports_back_into_the_state_it_holds(tmp_path):
    """A container reconcile made (our block, the veth it names on a bridge it made), imported:
    what reconcile always writes reads back as it was. (The template's lines outside the block
    become the manifest's too, and move into the block at the next write.)"""
    text = (FIXTURES / "lxc" / "config-managed-app1").read_text()
    (doc,) = import_text(text, "/var/lib/lxc/app1/config", {"node": "lb1"}, tmp_path, state="running").documents
    spec = loaded(doc).get("Container", "app1").spec
    assert spec.interfaces()[0].options == {"veth.pair": "rc-app1"}
    from reconcilers.lxc.model import observed_from_config

    want, have = desired_state("app1", spec), observed_from_config("app1", "/var/lib/lxc", text, "running")
    for field in ("network", "networks", "limits", "init", "autostart", "startOrder", "rootfs"):
        assert have[field] == want[field], field
