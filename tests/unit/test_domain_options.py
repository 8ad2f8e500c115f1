"""DomainJoin as operators write it (issue 20): every sssd option per section, the typed
fields (servers, access filter, names, homes, id mapping), passwords by reference, sudo
rules checked by visudo, krb5.conf checked by MIT Kerberos, and bad input with file:line
and field. Native validators run on temp files only; nothing here starts sssd."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree
from reconcilers.base import GENERATED_HEADER, ApplyError, Node, Runner
from reconcilers.domain import files, krb5, sssd
from reconcilers.domain.adcli import join_argv
from reconcilers.domain.files import Paths
from reconcilers.domain.reconciler import DomainJoinReconciler
from tests.readonly_allowlist import allowed

LAB_JOIN = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata: {name: corp}
spec:
  node: lb1
  domain: corp.example.test
  password: {file: /etc/reconcile/secrets/corp-join.password}
  adServers: [dc1.corp.example.test]
  fullyQualifiedNames: true
  homeDirectories: {pattern: "/home/%u@%d"}
  accessProvider: ad
  accessFilter: "(memberOf=CN=app-admins,CN=Users,DC=corp,DC=example,DC=test)"
  sudo:
    - {groups: [app-admins], noPassword: true, runAs: root, commands: [/usr/bin/id]}
  krb5: {kdcs: [dc1.corp.example.test], adminServer: dc1.corp.example.test}
  options:
    nss: {filter_users: root}
    domain: {ldap_referrals: "false", ldap_default_authtok: {file: SECRET}}
"""


def planned(tmp_path: Path, text: str = LAB_JOIN, secret: str = "bind-pass") -> tuple[DomainJoinReconciler, dict]:
    (tmp_path / "secret").write_text(secret + "\n")
    (tmp_path / "tree").mkdir(exist_ok=True)
    (tmp_path / "tree" / "join.yaml").write_text(text.replace("SECRET", str(tmp_path / "secret")))
    etc = tmp_path / "etc"
    (etc / "sssd").mkdir(parents=True, exist_ok=True)
    (etc / "sudoers.d").mkdir(exist_ok=True)
    paths = Paths(keytab=etc / "krb5.keytab", sssd_conf=etc / "sssd" / "sssd.conf", sssd_snippets=etc / "conf.d",
                  sssd_pid=tmp_path / "sssd.pid", nsswitch=etc / "nsswitch.conf",
                  pam_session=etc / "common-session", sudoers_dir=etc / "sudoers.d", krb5_conf=etc / "krb5.conf")
    rec = DomainJoinReconciler(paths)
    return rec, rec.desired(load_tree(tmp_path / "tree"), Node("lb1", Runner(dry_run=True), tmp_path / "state"))


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "tree").mkdir(exist_ok=True)
    (tmp_path / "tree" / "join.yaml").write_text(text)
    with pytest.raises(TreeError) as err:
        load_tree(tmp_path / "tree")
    return [str(p) for p in err.value.problems]


def test_the_lab_join_renders_what_the_issue_asks(tmp_path):
    rec, desired = planned(tmp_path)
    a = rec.wanted["corp"]
    section = sssd.as_dict(sssd.parse_ini(a.sssd_conf))["domain/corp.example.test"]
    assert section["ad_server"] == "dc1.corp.example.test"
    assert section["access_provider"] == "ad" and section["ad_access_filter"].startswith("(memberOf=CN=app-admins")
    assert (section["use_fully_qualified_names"], section["fallback_homedir"]) == ("true", "/home/%u@%d")
    assert section["realmd_tags"] == "manages-system joined-with-adcli"  # `realm list` reads it
    assert section["ldap_default_authtok"] == f"<secret: file:{tmp_path / 'secret'}>"  # never the password
    assert sssd.as_dict(sssd.parse_ini(a.sssd_conf))["nss"] == {"filter_users": "root"}
    assert a.sudoers.splitlines()[2] == r"%app-admins\@corp.example.test ALL=(root) NOPASSWD: /usr/bin/id"
    assert "kdc = dc1.corp.example.test" in a.krb5_conf and "dns_lookup_kdc = false" in a.krb5_conf
    assert "--domain-controller=dc1.corp.example.test" in join_argv(a.spec, a.computer, Path("/etc/krb5.keytab"))
    assert "bind-pass" not in json.dumps(desired["DomainJoin"]["corp"].state)


def test_every_native_validator_accepts_the_rendering_once(tmp_path):
    rec, _ = planned(tmp_path)
    node = Node("lb1", Runner(dry_run=True, recording=True), tmp_path / "state")
    assert rec.validate(node) == []
    assert [r.argv[0] for r in node.runner.records] == ["sssctl", "visudo", "klist"]
    assert all(allowed(r.what, r.argv) for r in node.runner.records)
    # accepted renderings are remembered: a run that may change the node writes the cache, the next asks nothing
    writer = Node("lb1", Runner(recording=True), tmp_path / "state")
    assert files.check(writer, rec.wanted["corp"], rec.paths) == []
    again = Node("lb1", Runner(dry_run=True, recording=True), tmp_path / "state")
    assert rec.validate(again) == [] and again.runner.records == []


def test_what_apply_writes_reads_back_as_desired_with_the_password_masked(tmp_path):
    rec, desired = planned(tmp_path)
    a, want = rec.wanted["corp"], desired["DomainJoin"]["corp"].state
    final = sssd.render_sssd_conf(a.name, a.spec, a.computer, secret=lambda ref: "bind-pass")
    assert "ldap_default_authtok = bind-pass" in final
    node = Node("lb1", Runner(), tmp_path / "state")
    (tmp_path / "etc" / "krb5.conf").write_text("[libdefaults]\n default_realm = OTHER\n")  # the node's own
    files.install(node, a, rec.paths, final, tmp_path / "state" / "krb5.conf.before")
    have = rec._observe_one(node, "corp", None, {"domain": "corp.example.test", "computerName": "LB1"})
    skip = {"sssd", "nsswitch"}  # no sssd runs here, nsswitch is added apart
    assert {k: v for k, v in have.items() if k not in skip} == {k: v for k, v in want.items() if k not in skip}
    # the krb5.conf found there is kept aside and comes back when reconcile stops managing it
    assert (tmp_path / "state" / "krb5.conf.before").read_text().startswith("[libdefaults]")
    files.release_krb5(__import__("reconcilers.base", fromlist=["AtomicWriter"]).AtomicWriter(node), rec.paths,
                       tmp_path / "state" / "krb5.conf.before")
    assert (tmp_path / "etc" / "krb5.conf").read_text() == "[libdefaults]\n default_realm = OTHER\n"
    # a password changed behind reconcile's back shows as that, never as its value
    changed = final.replace("bind-pass", "other-pass")
    rec.paths.sssd_conf.write_text(changed)
    have = rec._observe_one(node, "corp", None, None)
    assert have["sssdConf"]["domain/corp.example.test"]["ldap_default_authtok"] == "<secret: not the referenced one>"
    assert "other-pass" not in json.dumps(have)


def test_an_ldap_client_without_a_machine_account(tmp_path):
    text = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata: {name: ldap}
spec:
  node: lb1
  domain: example.test
  provider: ldap
  authProvider: krb5
  accessProvider: ldap
  accessFilter: "(memberOf=cn=ops,ou=groups,dc=example,dc=test)"
  idMapping: true
  options:
    domain: {ldap_uri: "ldaps://ldap.example.test", ldap_search_base: "dc=example,dc=test",
             ldap_default_bind_dn: "cn=reader,dc=example,dc=test", ldap_default_authtok: {env: LDAP_BIND_PW}}
"""
    rec, desired = planned(tmp_path, text)
    a = rec.wanted["ldap"]
    section = sssd.as_dict(sssd.parse_ini(a.sssd_conf))["domain/example.test"]
    assert section["id_provider"] == "ldap" and "ad_domain" not in section and "krb5_keytab" not in section
    assert section["ldap_access_filter"].startswith("(memberOf=cn=ops") and section["krb5_realm"] == "EXAMPLE.TEST"
    assert desired["DomainJoin"]["ldap"].state["membership"] is None
    assert files.check(Node("lb1", Runner(dry_run=True), tmp_path / "s"), a, rec.paths) == []


@pytest.mark.parametrize("extra, field, words", [
    ("  options:\n    domain: {ldap_default_authtok: Secret1}\n", "spec.options.domain.ldap_default_authtok",
     "holds a password: give it by reference"),
    ("  sudo:\n    - {groups: [ops], commands: [\"/usr/bin/id\\nALL\"]}\n", "spec.sudo[0].commands[0]", "newline"),
    ("  sudo:\n    - {groups: [ops], commands: [usr/bin/id]}\n", "spec.sudo[0].commands[0]", "absolute program path"),
    ("  sudo:\n    - {groups: [ops], commands: [\"/bin/sh -c (id)\"]}\n", "spec.sudo[0].commands[0]", "( )"),
    ("  sudo:\n    - {commands: [/usr/bin/id]}\n", "spec.sudo[0]", "needs groups or users"),
    ("  options:\n    domain: {simple_allow_groups: ops}\n", "spec.options.domain.simple_allow_groups",
     "set by spec.allowGroups"),
    ("  options:\n    nss: {\"filter_users\": \" root\"}\n", "spec.options.nss.filter_users", "blank"),
    ("  options:\n    \"domain/corp.example.test\": {a: b}\n", "spec.options.domain/corp.example.test",
     "write its options under `domain`"),
    ("  accessFilter: \"(memberOf=x)\"\n", "spec", "accessFilter needs accessProvider ad"),
    ("  krb5: {kdcs: [\"dc1 {\"]}\n", "spec.krb5.kdcs[0]", ""),
])
def test_bad_domain_input_names_file_line_and_field(tmp_path, extra, field, words):
    text = ("apiVersion: reconcile/v1\nkind: DomainJoin\nmetadata: {name: corp}\nspec:\n  node: lb1\n"
            "  domain: corp.example.test\n  password: {file: /etc/reconcile/secrets/p}\n" + extra)
    (found,) = problems(tmp_path, text)
    assert found.startswith("join.yaml:") and f": {field}: " in found and words in found, found


def test_krb5_conf_is_checked_by_mit_kerberos(tmp_path):
    bad = tmp_path / "krb5.conf"
    bad.write_text("this is not a profile\n[libdefaults\n")
    with pytest.raises(ApplyError, match="MIT Kerberos refuses"):
        krb5.check_krb5_conf(Node("lb1", Runner(dry_run=True)), bad)
    conf = krb5.parse_krb5_conf("[realms]\n X = {\n  kdc = a\n  kdc = b\n }\n")
    assert conf == {"realms": {"X": {"kdc": ["a", "b"]}}}


def test_a_generated_header_marks_every_file(tmp_path):
    rec, _ = planned(tmp_path)
    a = rec.wanted["corp"]
    assert all(GENERATED_HEADER in text for text in (a.sssd_conf, a.sudoers, a.krb5_conf))
