"""DomainJoin against the lab's real Samba AD DC: join, users, access, sudo, secrecy, leave.

One lab (lb1, lb2, dc1) is shared by the tests of this module: a join takes a few seconds,
and each test first applies the manifest it needs, so the order only saves work. Everything
runs inside the nodes as an operator would: `reconcile apply --repo <shared tree>`.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Iterator

import pytest

from controller.lab import ADMIN_PASSWORD, DC_NODE, DOMAIN, JOIN_PASSWORD_FILE, Lab, temporary_lab
from tests.lab.sampling import CmdlineWatcher
from tests.readonly_allowlist import allowed

pytestmark = pytest.mark.lab

JOIN = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata:
  name: corp
spec:
  nodes: ["*"]
  domain: {domain}
  password: {{file: {secret}}}
  allowGroups: {allow}
  sudoGroups: {sudo}
  homeDirectories: {{create: true, pattern: /home/%u, skel: /etc/skel, umask: "0077"}}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(nodes=2, domain_controller=True, prefix="dj") as lab:
        yield lab


def repo(lab: Lab, name: str = "repo", allow: str = "[app-admins]", sudo: str = "[Domain Admins]",
         secret: str = JOIN_PASSWORD_FILE) -> str:
    root = lab.shared / name
    root.mkdir(exist_ok=True)
    (root / "join.yaml").write_text(JOIN.format(domain=DOMAIN, secret=secret, allow=allow, sudo=sudo))
    return str(root)


def empty_repo(lab: Lab) -> str:
    root = lab.shared / "empty"
    root.mkdir(exist_ok=True)
    return str(root)


def apply(lab: Lab, node: str, tree: str, *extra: str):
    r = lab.reconcile(node, "apply", "--repo", tree, *extra, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def sh(lab: Lab, node: str, script: str, check: bool = True):
    return lab.exec(node, ["sh", "-c", script], check=check)


def account_check(lab: Lab, node: str, user: str) -> str:
    """sssd's access provider through a real PAM account check (service login)."""
    out = lab.exec(node, ["sssctl", "user-checks", "-a", "acct", "-s", "login", user], check=False)
    return next(line for line in (out.stdout + out.stderr).splitlines() if line.startswith("pam_acct_mgmt:"))


def computers(lab: Lab) -> list[str]:
    return lab.exec(DC_NODE, ["samba-tool", "computer", "list"]).stdout.split()


def test_join_resolves_users_enforces_access_and_sudo_without_leaking_the_password(lab):
    tree = repo(lab)
    record = str(lab.shared / "dry-run-record.json")
    plan = lab.exec("lb1", ["reconcile", "--dry-run", "--repo", tree], env={"RECONCILE_RECORD": record}, check=False)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "+ DomainJoin corp" in plan.stdout and "join corp.example.test as LB1$" in plan.stdout
    records = json.loads(Path(record).read_text())
    refused = [r for r in records if not allowed(r["what"], r["argv"])]
    assert refused == [], "dry-run ran commands outside the read-only allow-list"
    assert lab.exec("lb1", ["test", "-e", "/etc/krb5.keytab"], check=False).returncode != 0

    with CmdlineWatcher(lab, "lb1") as watcher:
        run = apply(lab, "lb1", tree, "-v")  # -v logs every command the runner ran
    assert "LB1$" in computers(lab)
    # the join password: never in any process's argv or environment, the run's output, logs or state
    assert watcher.samples > 10 and any("adcli" in s and "join" in s for s in watcher.seen.values()), \
        "the sampler never saw adcli join run"
    assert not [s for s in watcher.seen.values() if ADMIN_PASSWORD in s]
    assert ADMIN_PASSWORD not in run.stdout + run.stderr
    assert "adcli join" in run.stderr  # the verbose log is there, and redacted
    # /tmp without the checkout itself: a clone under /tmp is visible in nodes, and the lab's
    # constants (controller/lab/config.py) hold the test password on purpose.
    checkout = shlex.quote(str(Path(__file__).resolve().parents[2]))
    leaks = sh(lab, "lb1", f"grep -rlF -- '{ADMIN_PASSWORD}' /var/log /var/lib/reconcile /var/lib/sss /run /etc/sssd "
                           "/etc/sudoers.d /etc/pam.d /etc/krb5.keytab; "
                           f"find /tmp -path {checkout} -prune -o -type f -exec grep -lF -- '{ADMIN_PASSWORD}' {{}} +; "
                           "true").stdout
    assert leaks.strip() == ""
    assert ADMIN_PASSWORD not in lab.exec("lb1", ["ps", "-eo", "args"]).stdout

    # domain users by short name
    passwd = lab.exec("lb1", ["getent", "passwd", "alice"]).stdout
    assert passwd.startswith("alice:") and ":/home/alice:" in passwd
    ident = lab.exec("lb1", ["id", "alice"]).stdout
    assert "(app-admins)" in ident and "(domain admins)" in ident
    # access: alice is in app-admins, carol in no allowed group
    assert account_check(lab, "lb1", "alice") == "pam_acct_mgmt: Success"
    assert account_check(lab, "lb1", "carol") == "pam_acct_mgmt: Permission denied"
    assert lab.exec("lb1", ["su", "-", "carol", "-c", "true"], check=False).returncode != 0
    # a login through PAM's session stack creates the home from skel with the umask
    home = lab.exec("lb1", ["su", "-", "alice", "-c", "pwd; stat -c %a ~; ls -A ~"]).stdout.split()
    assert home[:2] == ["/home/alice", "700"] and ".profile" in home
    # sudo for a member of "domain admins" (a group name with a space)
    assert "(ALL : ALL) ALL" in lab.exec("lb1", ["sudo", "-l", "-U", "alice"]).stdout
    assert "is not allowed to run sudo" in lab.exec("lb1", ["sudo", "-l", "-U", "carol"]).stdout
    mode = sh(lab, "lb1", "stat -c '%a %U' /etc/sudoers.d/reconcile-corp /etc/sssd/sssd.conf").stdout.split("\n")
    assert mode[:2] == ["440 root", "600 root"]

    # converged: nothing left to do
    again = apply(lab, "lb1", tree)
    assert "1 in-sync" in again.stdout and "changed" not in again.stdout
    assert lab.reconcile("lb1", "--dry-run", "--repo", tree).returncode == 0


def test_changing_groups_restarts_sssd_without_rejoining(lab):
    apply(lab, "lb1", repo(lab))
    keytab = sh(lab, "lb1", "sha256sum /etc/krb5.keytab; stat -c %Y /etc/krb5.keytab").stdout
    sssd_pid = lab.read_file("lb1", "/run/sssd.pid").strip()
    assert account_check(lab, "lb1", "bob") == "pam_acct_mgmt: Permission denied"

    tree = repo(lab, allow="[app-admins, web users]", sudo="[Domain Admins, web users]")
    plan = lab.reconcile("lb1", "--dry-run", "--repo", tree)
    assert plan.returncode == 2
    assert "sssdConf.domain/corp.example.test.simple_allow_groups: app-admins → " in plan.stdout
    assert "restart sssd" in plan.stdout
    assert "join corp" not in plan.stdout
    apply(lab, "lb1", tree)

    assert sh(lab, "lb1", "sha256sum /etc/krb5.keytab; stat -c %Y /etc/krb5.keytab").stdout == keytab
    assert lab.read_file("lb1", "/run/sssd.pid").strip() != sssd_pid
    assert account_check(lab, "lb1", "bob") == "pam_acct_mgmt: Success"
    assert "(ALL : ALL) ALL" in lab.exec("lb1", ["sudo", "-l", "-U", "bob"]).stdout

    # a local edit of a file reconcile owns is drift, and is reverted
    sh(lab, "lb1", "echo '%carol ALL=(ALL:ALL) ALL' >> /etc/sudoers.d/reconcile-corp")
    drift = lab.reconcile("lb1", "--dry-run", "--repo", tree)
    assert drift.returncode == 2 and "drift" in drift.stdout
    apply(lab, "lb1", tree)
    assert "carol" not in lab.read_file("lb1", "/etc/sudoers.d/reconcile-corp")
    assert lab.reconcile("lb1", "--dry-run", "--repo", tree).returncode == 0


def test_health_asks_the_kdc_every_plan_so_a_disabled_account_shows_at_once(lab):
    """Health is the KDC's verdict on the keytab's keys (`kinit -k`, ~0.07 s, nothing
    remembered between plans): an account disabled in AD is Degraded on the very next plan
    and Healthy again on the one after it is enabled, while sync stays Ready (no rejoin)."""
    tree = repo(lab)
    apply(lab, "lb1", tree)

    def join_health() -> tuple[int, str, str]:
        r = lab.reconcile("lb1", "--dry-run", "--repo", tree, "-o", "json")
        obj = next(o for o in json.loads(r.stdout)["objects"] if o["kind"] == "DomainJoin")
        return r.returncode, obj["health"]["status"], obj["health"]["reason"]

    assert join_health() == (0, "Healthy", "JoinValid")
    lab.exec(DC_NODE, ["samba-tool", "user", "disable", "LB1$"])
    try:
        assert join_health() == (0, "Degraded", "JoinRejected")
    finally:
        lab.exec(DC_NODE, ["samba-tool", "user", "enable", "LB1$"])
    assert join_health() == (0, "Healthy", "JoinValid")


def test_removing_the_manifest_leaves_the_domain(lab):
    apply(lab, "lb1", repo(lab))
    assert "LB1$" in computers(lab)
    session_before = lab.read_file("lb2", "/etc/pam.d/common-session")  # lb2 never joined: pristine

    plan = lab.reconcile("lb1", "--dry-run", "--repo", empty_repo(lab))
    assert plan.returncode == 2 and "- DomainJoin corp" in plan.stdout
    apply(lab, "lb1", empty_repo(lab))

    assert "LB1$" not in computers(lab)  # the computer object is gone on the DC
    gone = sh(lab, "lb1", "ls /etc/krb5.keytab /etc/sssd/sssd.conf /etc/sudoers.d/reconcile-corp "
                          "/var/lib/reconcile/domain-join/corp.json 2>&1; true").stdout
    assert gone.count("No such file") == 4, gone
    assert lab.read_file("lb1", "/etc/pam.d/common-session") == session_before
    assert lab.exec("lb1", ["getent", "passwd", "alice"], check=False).returncode != 0
    assert sh(lab, "lb1", "ps -eo comm | grep -c '^sssd$'; true").stdout.strip() == "0"
    assert lab.reconcile("lb1", "--dry-run", "--repo", empty_repo(lab)).returncode == 0


def test_missing_secret_file_is_a_clear_error_and_changes_nothing(lab):
    tree = repo(lab, name="no-secret", secret="/etc/reconcile/secrets/missing.password")
    before = sh(lab, "lb2", "cat /etc/nsswitch.conf /etc/pam.d/common-session; ls /etc/sssd /etc/sudoers.d").stdout
    r = lab.reconcile("lb2", "apply", "--repo", tree)
    assert r.returncode == 1
    assert "secret file /etc/reconcile/secrets/missing.password does not exist on node lb2" in r.stdout + r.stderr
    assert sh(lab, "lb2", "cat /etc/nsswitch.conf /etc/pam.d/common-session; ls /etc/sssd /etc/sudoers.d").stdout == before
    assert lab.exec("lb2", ["test", "-e", "/etc/krb5.keytab"], check=False).returncode == 1
    assert "LB2$" not in computers(lab)


def test_computer_name_and_ou_are_used_and_a_new_ou_rejoins(lab):
    """A computer name other than the host name (sssd must then be told which keytab
    principal is its own) in an OU; moving it to another OU re-creates the account there."""
    for ou in ("Servers", "Web"):
        lab.exec(DC_NODE, ["samba-tool", "ou", "add", f"OU={ou}"], check=False)
    root = lab.shared / "ou"
    root.mkdir(exist_ok=True)

    def write(ou: str) -> str:
        (root / "join.yaml").write_text(
            JOIN.format(domain=DOMAIN, secret=JOIN_PASSWORD_FILE, allow="[app-admins]", sudo="[]")
            + f"  computerName: web-lb2\n  ou: OU={ou},DC=corp,DC=example,DC=test\n")
        return str(root)

    def dn() -> str:
        show = lab.exec(DC_NODE, ["samba-tool", "computer", "show", "WEB-LB2$", "--attributes=distinguishedName"])
        return show.stdout.split("dn: ", 1)[1].split()[0]

    try:
        apply(lab, "lb2", write("Servers"))
        assert dn() == "CN=WEB-LB2,OU=Servers,DC=corp,DC=example,DC=test"
        assert "WEB-LB2$@" in lab.exec("lb2", ["klist", "-k", "/etc/krb5.keytab"]).stdout
        assert lab.exec("lb2", ["getent", "passwd", "alice"]).stdout.startswith("alice:")
        assert lab.exec("lb2", ["test", "-e", "/etc/sudoers.d/reconcile-corp"], check=False).returncode == 1

        plan = lab.reconcile("lb2", "--dry-run", "--repo", write("Web"))
        assert plan.returncode == 2 and "in OU=Web,DC=corp" in plan.stdout
        apply(lab, "lb2", str(root))
        assert dn() == "CN=WEB-LB2,OU=Web,DC=corp,DC=example,DC=test"
        assert lab.reconcile("lb2", "--dry-run", "--repo", str(root)).returncode == 0
    finally:
        apply(lab, "lb2", empty_repo(lab))
    assert "WEB-LB2$" not in computers(lab)


def test_a_computer_name_change_replaces_the_old_account_and_its_keys(lab):
    """Issue 22: the old name's keys stayed first in the keytab, so every later run saw the
    old name and refused ("joined … by something other than reconcile")."""
    root = lab.shared / "rename"
    root.mkdir(exist_ok=True)

    def write(name: str) -> str:
        (root / "join.yaml").write_text(
            JOIN.format(domain=DOMAIN, secret=JOIN_PASSWORD_FILE, allow="[app-admins]", sudo="[]")
            + f"  computerName: {name}\n")
        return str(root)

    def principals() -> set[str]:
        out = lab.exec("lb2", ["klist", "-k", "/etc/krb5.keytab"]).stdout.splitlines()[3:]
        return {line.split()[1].split("@")[0] for line in out}

    try:
        apply(lab, "lb2", write("web-a"))
        assert "WEB-A$" in computers(lab)
        assert principals() == {"WEB-A$", "host/WEB-A", "RestrictedKrbHost/WEB-A", "host/lb2.corp.example.test",
                                "RestrictedKrbHost/lb2.corp.example.test"}

        plan = lab.reconcile("lb2", "--dry-run", "--repo", write("web-b"))
        assert plan.returncode == 2 and "join corp.example.test as WEB-B$" in plan.stdout, plan.stdout
        apply(lab, "lb2", str(root))
        assert "WEB-B$" in computers(lab) and "WEB-A$" not in computers(lab)
        # the new account's keys only, host/<fqdn> included (adcli skipped those while the old ones were there)
        assert principals() == {"WEB-B$", "host/WEB-B", "RestrictedKrbHost/WEB-B", "host/lb2.corp.example.test",
                                "RestrictedKrbHost/lb2.corp.example.test"}
        assert lab.exec("lb2", ["adcli", "testjoin", f"--domain={DOMAIN}"], check=False).returncode == 0
        assert "ldap_sasl_authid = WEB-B$" in lab.read_file("lb2", "/etc/sssd/sssd.conf")
        assert lab.exec("lb2", ["getent", "passwd", "alice"]).stdout.startswith("alice:")
        # and the next runs have nothing to do
        again = apply(lab, "lb2", str(root))
        assert "1 in-sync" in again.stdout, again.stdout
        assert lab.reconcile("lb2", "--dry-run", "--repo", str(root)).returncode == 0
    finally:
        apply(lab, "lb2", empty_repo(lab))
    assert not {"WEB-A$", "WEB-B$"} & set(computers(lab))


def test_a_damaged_record_is_named_a_lost_one_is_written_anew_and_group_changes_apply_with_the_dc_away(lab):
    """Issue 21, items 2 and 9: the record of the join in the state folder damaged (an error
    naming it, nothing changes), then deleted (a group change still applies: files, sssd
    restarted, the record written again), and with the DC unreachable a group change, which
    is local (sssd.conf, sudo rules), applies all the same."""
    tree = repo(lab)
    apply(lab, "lb1", tree)
    marker = "/var/lib/reconcile/domain-join/corp.json"
    more = repo(lab, name="more-groups", allow="[app-admins, web users]")

    lab.write_file("lb1", marker, "{damaged", mode=0o600)
    r = lab.reconcile("lb1", "apply", "--no-health", "--repo", more)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and f"{marker}: cannot be read" in out and "Traceback" not in out, out
    assert "web users" not in lab.read_file("lb1", "/etc/sssd/sssd.conf")

    sh(lab, "lb1", f"rm {marker}")
    sssd_pid = lab.read_file("lb1", "/run/sssd.pid").strip()
    apply(lab, "lb1", more, "--no-health")
    assert "web users" in lab.read_file("lb1", "/etc/sssd/sssd.conf")
    assert lab.read_file("lb1", "/run/sssd.pid").strip() != sssd_pid
    assert json.loads(lab.read_file("lb1", marker))["name"] == "corp"

    dc = [lab.address(DC_NODE), lab.address6(DC_NODE)]
    for address in dc:
        sh(lab, "lb1", f"ip route add blackhole {address}")
    try:
        sssd_pid = lab.read_file("lb1", "/run/sssd.pid").strip()
        apply(lab, "lb1", tree, "--no-health")
        assert "web users" not in lab.read_file("lb1", "/etc/sssd/sssd.conf")
        assert lab.read_file("lb1", "/run/sssd.pid").strip() != sssd_pid
    finally:
        for address in dc:
            sh(lab, "lb1", f"ip route del blackhole {address}", check=False)
    assert lab.reconcile("lb1", "--dry-run", "--no-health", "--repo", tree).returncode == 0

    # the record lost again, then the manifest removed (issue 21, item 2): the sudo rule,
    # the PAM block and sssd.conf still go, seen from reconcile's own files; the account
    # stays (its password reference was in the record), which the plan says
    sh(lab, "lb1", f"rm {marker}")
    plan = lab.reconcile("lb1", "--dry-run", "--no-health", "--repo", empty_repo(lab))
    assert plan.returncode == 2 and "- DomainJoin corp" in plan.stdout, plan.stdout
    assert "no record of how it joined" in plan.stdout, plan.stdout
    apply(lab, "lb1", empty_repo(lab), "--no-health")
    gone = sh(lab, "lb1", "ls /etc/sudoers.d/reconcile-corp /etc/sssd/sssd.conf 2>&1; true").stdout
    assert gone.count("No such file") == 2, gone
    assert "reconcile DomainJoin/corp" not in lab.read_file("lb1", "/etc/pam.d/common-session")
    assert "LB1$" in computers(lab)
    assert lab.reconcile("lb1", "--dry-run", "--no-health", "--repo", empty_repo(lab)).returncode == 0
