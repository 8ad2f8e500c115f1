"""DomainJoin as operators write it (issue 20), against the lab's real Samba AD DC: a join
pinned to the DC with fully qualified names and /home/%u@%d homes, an ad_access_filter that
admits one group, a NOPASSWD sudo rule for one command, krb5.conf managed (the lab's own put
back on leave), `realm list` telling the truth, and bad input that changes nothing.

One lab (lb1, dc1) serves the module; the first test joins, the others use that join.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from controller.lab import DOMAIN, JOIN_PASSWORD_FILE, Lab, temporary_lab

pytestmark = pytest.mark.lab

NODE = "lb1"
JOIN = f"""\
apiVersion: reconcile/v1
kind: DomainJoin
metadata: {{name: corp}}
spec:
  node: lb1
  domain: {DOMAIN}
  password: {{file: {JOIN_PASSWORD_FILE}}}
  adServers: [dc1.{DOMAIN}]
  fullyQualifiedNames: true
  homeDirectories: {{pattern: "/home/%u@%d"}}
  accessProvider: ad
  accessFilter: "(memberOf=CN=app-admins,CN=Users,DC=corp,DC=example,DC=test)"
  sudo:
    - {{groups: [app-admins], noPassword: true, runAs: root, commands: [/usr/bin/id -u]}}
  krb5: {{kdcs: [dc1.{DOMAIN}], adminServer: dc1.{DOMAIN}}}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=1, domain_controller=True, prefix="do") as lab:
        yield lab


def tree(lab: Lab, name: str, text: str) -> str:
    root = lab.shared / name
    root.mkdir(exist_ok=True)
    (root / "join.yaml").write_text(text)
    return str(root)


def apply(lab: Lab, repo: str):
    r = lab.reconcile(NODE, "apply", "--repo", repo, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def sh(lab: Lab, script: str, check: bool = True) -> str:
    return lab.exec(NODE, ["sh", "-c", script], check=check).stdout


def access(lab: Lab, user: str) -> str:
    out = lab.exec(NODE, ["sssctl", "user-checks", "-a", "acct", "-s", "login", user], check=False)
    return next(line for line in (out.stdout + out.stderr).splitlines() if line.startswith("pam_acct_mgmt:"))


@pytest.fixture(scope="module")
def joined(lab: Lab) -> str:
    lab_krb5 = lab.read_file(NODE, "/etc/krb5.conf")
    repo = tree(lab, "join", JOIN)
    apply(lab, repo)
    assert lab.reconcile(NODE, "--dry-run", "--repo", repo).returncode == 0
    yield lab_krb5


def test_a_join_pinned_to_the_dc_with_fully_qualified_names_and_their_homes(lab, joined):
    conf = lab.read_file(NODE, "/etc/sssd/sssd.conf")
    assert f"ad_server = dc1.{DOMAIN}" in conf and "use_fully_qualified_names = true" in conf
    krb5 = lab.read_file(NODE, "/etc/krb5.conf")
    assert f"kdc = dc1.{DOMAIN}" in krb5 and "dns_lookup_kdc = false" in krb5
    passwd = sh(lab, f"getent passwd alice@{DOMAIN}")
    assert passwd.startswith(f"alice@{DOMAIN}:") and f":/home/alice@{DOMAIN}:" in passwd
    assert sh(lab, "getent passwd alice", check=False) == ""  # names are fully qualified
    home = sh(lab, f"su - alice@{DOMAIN} -c 'pwd; id -un'").split()
    assert home == [f"/home/alice@{DOMAIN}", f"alice@{DOMAIN}"]
    realm = sh(lab, "realm list")
    assert f"domain-name: {DOMAIN}" in realm and "configured: kerberos-member" in realm
    assert f"login-formats: %U@{DOMAIN}" in realm and "client-software: sssd" in realm


def test_an_ad_access_filter_admits_one_group(lab, joined):
    assert access(lab, f"alice@{DOMAIN}") == "pam_acct_mgmt: Success"  # in app-admins
    assert access(lab, f"bob@{DOMAIN}") == "pam_acct_mgmt: Permission denied"  # in web users only
    assert lab.exec(NODE, ["su", "-", f"bob@{DOMAIN}", "-c", "true"], check=False).returncode != 0


def test_a_nopasswd_sudo_rule_for_one_command(lab, joined):
    assert sh(lab, f"su - alice@{DOMAIN} -c 'sudo -n /usr/bin/id -u'").strip() == "0"
    other = lab.exec(NODE, ["su", "-", f"alice@{DOMAIN}", "-c", "sudo -n /usr/bin/whoami"], check=False)
    assert other.returncode != 0  # only that command, and no password prompt to fall back to
    assert "(root) NOPASSWD: /usr/bin/id -u" in sh(lab, f"sudo -l -U alice@{DOMAIN}")


def test_realm_list_names_who_may_log_in(lab, joined):
    simple = JOIN.replace('  accessProvider: ad\n  accessFilter: "(memberOf=CN=app-admins,CN=Users,DC=corp,DC=example,'
                          'DC=test)"\n', "  allowGroups: [app-admins]\n  allowUsers: [carol]\n")
    apply(lab, tree(lab, "simple", simple))
    realm = sh(lab, "realm list")
    assert "login-policy: allow-permitted-logins" in realm and "permitted-groups: app-admins" in realm
    assert f"permitted-logins: carol@{DOMAIN}" in realm
    assert access(lab, f"carol@{DOMAIN}") == "pam_acct_mgmt: Success"
    apply(lab, tree(lab, "join", JOIN))


@pytest.mark.parametrize("change, where, words", [
    ("  options:\n    domain: {ldap_default_authtok: Plain.Text-1}\n", "join.yaml:14: spec.options.domain."
     "ldap_default_authtok", "holds a password: give it by reference"),
    ('  sudo:\n    - {groups: [app-admins], commands: ["/usr/bin/id\\nALL"]}\n', "join.yaml:14: spec.sudo[0]."
     "commands[0]", "holds a newline"),
])
def test_bad_input_is_refused_with_file_line_and_field_and_changes_nothing(lab, joined, change, where, words):
    text = JOIN.split("  sudo:")[0] + change + "  krb5: {kdcs: [dc1." + DOMAIN + "], adminServer: dc1." + DOMAIN + "}\n"
    repo = tree(lab, "bad", text)
    before = sh(lab, "cat /etc/sssd/sssd.conf /etc/sudoers.d/reconcile-corp /etc/krb5.conf; stat -c %Y /etc/sssd/sssd.conf")
    r = lab.reconcile(NODE, "apply", "--repo", repo)
    assert r.returncode == 1 and where in r.stdout + r.stderr and words in r.stdout + r.stderr, r.stdout + r.stderr
    assert "Plain.Text-1" not in r.stdout + r.stderr
    assert sh(lab, "cat /etc/sssd/sssd.conf /etc/sudoers.d/reconcile-corp /etc/krb5.conf; "
                   "stat -c %Y /etc/sssd/sssd.conf") == before


def test_leaving_puts_the_nodes_own_krb5_conf_back(lab, joined):
    empty = lab.shared / "empty"
    empty.mkdir(exist_ok=True)
    apply(lab, str(empty))
    assert lab.read_file(NODE, "/etc/krb5.conf") == joined
    assert sh(lab, "ls /etc/sssd/sssd.conf /etc/sudoers.d/reconcile-corp 2>&1; true").count("No such file") == 2
    assert "LB1$" not in lab.exec("dc1", ["samba-tool", "computer", "list"]).stdout
