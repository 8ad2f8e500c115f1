"""DomainJoin without a domain: parsers on output recorded from the real tools (in a lab
node joined to the lab's Samba AD DC, tests/fixtures/ad/), rendering, the native
validators (visudo, sssctl) on temp files, and schema errors through the loader.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from controller.loader import TreeError, load_tree
from reconcilers.base import GENERATED_HEADER, ApplyError, Change, Node, Runner, UnitState
from reconcilers.domain import files
from reconcilers.domain.adcli import keys_accepted, kinit_argv, membership_accepted, parse_keytab_list
from reconcilers.domain.files import Paths
from reconcilers.domain.nsswitch import nsswitch_add_sss, nsswitch_remove_sss, nsswitch_sources
from reconcilers.domain.pam import pam_with_block, pam_without_block, parse_pam_block
from reconcilers.domain.reconciler import DomainJoinReconciler
from reconcilers.domain import daemon, sssd
from reconcilers.domain.sssd import check_sssd_conf
from reconcilers.domain.sudoers import check_sudoers, parse_rules, render_sudoers, sudoers_escape, sudoers_unescape
from tests.readonly_allowlist import allowed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ad"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def recorded_testjoin(case: str, tool: str = "testjoin") -> tuple[int, str]:
    """rc and stderr of a recorded `adcli testjoin` or `kinit -k` (the recording appended `rc=N`)."""
    lines = fixture(f"{tool}-{case}.stderr").splitlines()
    return int(lines[-1].removeprefix("rc=")), "\n".join(lines[:-1])


MANIFEST = """\
apiVersion: reconcile/v1
kind: DomainJoin
metadata:
  name: corp
spec:
  domain: {domain}
  password: {{file: {secret}}}
  allowGroups: {allow}
  sudoGroups: {sudo}
{extra}  nodes: ["*"]
"""


def write_join(root: Path, domain="corp.example.test", secret="/etc/reconcile/secrets/corp-join.password",
               allow="[app-admins, web users]", sudo="[Domain Admins]", extra="") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "join.yaml").write_text(MANIFEST.format(domain=domain, secret=secret, allow=allow, sudo=sudo, extra=extra))
    return root


def problems_of(root: Path) -> list[str]:
    with pytest.raises(TreeError) as err:
        load_tree(root)
    return [str(p) for p in err.value.problems]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    etc = tmp_path / "etc"
    (etc / "pam.d").mkdir(parents=True)
    (etc / "sudoers.d").mkdir()
    (etc / "sssd").mkdir()
    (etc / "nsswitch.conf").write_text(fixture("nsswitch.conf.debian"))
    (etc / "pam.d" / "common-session").write_text(fixture("common-session.debian"))
    return Paths(keytab=etc / "krb5.keytab", sssd_conf=etc / "sssd" / "sssd.conf", sssd_snippets=etc / "sssd" / "conf.d",
                 sssd_pid=tmp_path / "run" / "sssd.pid", sssd_db=tmp_path / "db", sssd_mc=tmp_path / "mc",
                 nsswitch=etc / "nsswitch.conf", pam_session=etc / "pam.d" / "common-session",
                 sudoers_dir=etc / "sudoers.d")


def node(tmp_path: Path, dry_run: bool = False) -> Node:
    return Node("lb1", Runner(dry_run=dry_run, recording=True), tmp_path / "state")


def planned(tmp_path: Path, paths: Paths, **manifest) -> tuple[DomainJoinReconciler, dict]:
    tree = load_tree(write_join(tmp_path / "repo", **manifest))
    rec = DomainJoinReconciler(paths)
    return rec, rec.desired(tree, node(tmp_path))["DomainJoin"]


# --- parsers on recorded output --------------------------------------------------------------


def test_keytab_listing_gives_domain_and_computer_name():
    assert parse_keytab_list(fixture("klist-k-joined.txt")) == ("corp.example.test", "LB1")


def test_keytab_without_machine_principal_is_not_a_membership():
    assert parse_keytab_list(fixture("klist-k-missing.stdout")) is None
    only_services = "Keytab name: FILE:/etc/krb5.keytab\nKVNO Principal\n---- ----\n   2 host/lb1@CORP.EXAMPLE.TEST\n"
    assert parse_keytab_list(only_services) is None


def test_testjoin_accepted_membership_is_valid():
    assert membership_accepted(*recorded_testjoin("valid")) is True
    assert "Sucessfully validated join" in fixture("testjoin-valid.stdout")


@pytest.mark.parametrize("case", ["account-deleted", "password-reset", "no-account"])
def test_testjoin_refused_by_ad_means_not_joined(case):
    assert membership_accepted(*recorded_testjoin(case)) is False


@pytest.mark.parametrize("case", ["dc-unreachable", "no-dc"])
def test_testjoin_network_failure_is_an_error_not_a_reason_to_rejoin(case):
    with pytest.raises(ApplyError, match="cannot check the domain membership"):
        membership_accepted(*recorded_testjoin(case))


def test_the_kdc_accepting_the_keytabs_keys_means_the_membership_is_valid():
    assert keys_accepted(*recorded_testjoin("valid", "kinit-k")) is True


@pytest.mark.parametrize("case", ["account-deleted", "password-reset", "disabled"])
def test_the_kdc_refusing_the_machine_account_means_not_joined(case):
    # recorded against the lab's Samba DC: `samba-tool computer delete`, `user setpassword`,
    # `user disable` of a computer account joined with adcli
    assert keys_accepted(*recorded_testjoin(case, "kinit-k")) is False


@pytest.mark.parametrize("case", ["kdc-unreachable", "no-kdc"])
def test_no_kdc_to_ask_says_nothing_about_the_membership(case):
    with pytest.raises(ApplyError, match=r"cannot check the domain membership \(kinit -k\): kinit: Cannot"):
        keys_accepted(*recorded_testjoin(case, "kinit-k"))


def test_the_health_kinit_writes_no_credential_cache_and_is_allowed_in_a_dry_run():
    argv = kinit_argv("corp.example.test", "LB1", Path("/etc/krb5.keytab"))
    assert argv[:3] == ["kinit", "-c", "MEMORY:reconcile-health"] and argv[-1] == "LB1$@CORP.EXAMPLE.TEST"
    assert allowed("exec", argv)
    assert not allowed("exec", ["kinit", "-c", "FILE:/tmp/cc", *argv[3:]])


def test_nsswitch_of_debian_already_uses_sss_and_is_left_alone():
    text = fixture("nsswitch.conf.debian")
    assert {db: "sss" in src for db, src in nsswitch_sources(text).items() if db in ("passwd", "group", "shadow")} \
        == {"passwd": True, "group": True, "shadow": True}
    new, added = nsswitch_add_sss(text, ("passwd", "group", "shadow"))
    assert (new, added) == (text, [])


def test_nsswitch_gains_sss_only_on_its_lines_and_loses_only_what_was_added():
    text = fixture("nsswitch.conf.debian").replace("files systemd sss", "files systemd")
    text = text.replace("shadow:         files systemd\n", "")  # and no shadow line at all
    new, added = nsswitch_add_sss(text, ("passwd", "group", "shadow"))
    assert added == ["passwd", "group", "shadow"]
    sources = nsswitch_sources(new)
    assert sources["passwd"] == ["files", "systemd", "sss"] and sources["shadow"] == ["files", "sss"]
    assert sources["netgroup"] == ["nis", "sss"] and sources["hosts"] == ["files", "dns"]
    back = nsswitch_remove_sss(new, ["passwd", "group"])
    assert nsswitch_sources(back)["passwd"] == ["files", "systemd"]
    assert nsswitch_sources(back)["netgroup"] == ["nis", "sss"]  # not ours, untouched


def test_pam_block_goes_after_pam_auth_update_block_and_comes_out_cleanly():
    text = fixture("common-session.debian")
    new = pam_with_block(text, "corp", "/etc/skel", "0077")
    assert new.startswith(text)  # everything pam-auth-update wrote stays as it was
    assert new.index("# end of pam-auth-update config") < new.index("pam_mkhomedir.so")
    assert parse_pam_block(new, "corp") == {"skel": "/etc/skel", "umask": "0077"}
    assert parse_pam_block(new, "other") is None
    assert pam_with_block(new, "corp", "/etc/skel", "0077") == new  # idempotent
    assert pam_without_block(new, "corp") == text
    # what the lab node had after a real apply parses the same
    assert parse_pam_block(fixture("common-session.joined"), "corp") == {"skel": "/etc/skel", "umask": "0077"}


# --- sudoers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("group, word", [
    ("domain admins", r"domain\ admins"),
    ("web users", r"web\ users"),
    ("app-admins", "app-admins"),
    ("o'brien team", r"o\'brien\ team"),
    ("domain admins@corp.example.test", r"domain\ admins\@corp.example.test"),
])
def test_sudoers_escapes_group_names(group, word):
    assert sudoers_escape(group) == word
    assert sudoers_unescape(word) == group


def test_sudoers_rules_with_spaces_are_accepted_by_visudo(tmp_path):
    groups = ["domain admins", "web users", "o'brien team", "ops@corp.example.test"]
    text = render_sudoers("corp", [f"%{sudoers_escape(g)} ALL=(ALL:ALL) ALL" for g in groups])
    assert GENERATED_HEADER in text
    assert [sudoers_unescape(rule.rsplit(" ALL=", 1)[0][1:]) for rule in parse_rules(text)] == groups
    target = tmp_path / "reconcile-corp"
    target.write_text(text)
    check_sudoers(Node("lb1", Runner()), target)  # visudo -cf accepts it


def test_sudoers_recorded_from_the_lab_parses_back():
    assert parse_rules(fixture("sudoers.generated")) == [r"%domain\ admins ALL=(ALL:ALL) ALL",
                                                          r"%web\ users ALL=(ALL:ALL) ALL"]


def test_a_sudoers_file_visudo_rejects_is_never_installed(tmp_path, paths):
    rec, desired = planned(tmp_path, paths, sudo="[Domain Admins]")
    a = rec.wanted["corp"]
    a.sudoers = "# broken\n%domain admins ALL=(ALL:ALL) ALL\n"  # unescaped space: a syntax error
    problems = files.check(Node("lb1", Runner()), a, paths)
    assert len(problems) == 1 and "visudo refuses" in problems[0]
    paths.keytab.write_text("")  # joined already: apply would only write files
    outcome = rec.apply([Change("DomainJoin", "corp", "update", desired["corp"].state,
                                dict(desired["corp"].state, sudo=[]))], node(tmp_path))
    assert "visudo refuses" in str(outcome[("DomainJoin", "corp")])
    assert not paths.sudoers("corp").exists() and not paths.sssd_conf.exists()  # nothing of the set installed


def test_native_validation_is_read_only_and_allowed_in_dry_run(tmp_path, paths):
    rec, _ = planned(tmp_path, paths, sudo="[Domain Admins, web users]")
    n = node(tmp_path, dry_run=True)
    assert rec.validate(n) == []
    assert [r.argv[0] for r in n.runner.records] == ["sssctl", "visudo"]
    assert all(allowed(r.what, r.argv) for r in n.runner.records)


# --- sssd.conf -------------------------------------------------------------------------------


def test_sssd_conf_renders_the_ad_domain_and_sssctl_accepts_it(tmp_path, paths):
    rec, desired = planned(tmp_path, paths)
    text = rec.wanted["corp"].sssd_conf
    assert GENERATED_HEADER in text
    for line in ("id_provider = ad", "access_provider = simple", "simple_allow_groups = app-admins, web users",
                 "use_fully_qualified_names = false", "fallback_homedir = /home/%u", "krb5_keytab = /etc/krb5.keytab",
                 "krb5_realm = CORP.EXAMPLE.TEST"):
        assert line in text.splitlines()
    f = tmp_path / "sssd.conf"
    f.write_text(text)
    f.chmod(0o600)
    n = Node("lb1", Runner(dry_run=True, recording=True))
    check_sssd_conf(n, f, tmp_path / "no-conf.d")
    assert all(allowed(r.what, r.argv) for r in n.runner.records)


def test_sssctl_refuses_an_unknown_option(tmp_path):
    f = tmp_path / "sssd.conf"
    f.write_text("[sssd]\nservices = nss, pam\ndomains = x.test\n[domain/x.test]\nid_provider = ad\nallow_evrybody = true\n")
    f.chmod(0o600)
    with pytest.raises(ApplyError, match="allow_evrybody"):
        check_sssd_conf(Node("lb1", Runner()), f, tmp_path)


def test_ad_access_provider_and_fully_qualified_names(tmp_path, paths):
    rec, desired = planned(tmp_path, paths, allow="[]", sudo="[Domain Admins]",
                           extra="  accessProvider: ad\n  fullyQualifiedNames: true\n")
    text = rec.wanted["corp"].sssd_conf
    assert "access_provider = ad" in text and "simple_allow_groups" not in text
    assert "use_fully_qualified_names = true" in text
    assert r"%domain\ admins\@corp.example.test ALL=(ALL:ALL) ALL" in rec.wanted["corp"].sudoers
    assert desired["corp"].state["sudo"] == [r"%domain\ admins\@corp.example.test ALL=(ALL:ALL) ALL"]


def test_what_apply_writes_observes_as_desired(tmp_path, paths):
    """Files as apply leaves them read back into exactly the desired state (no endless diff)."""
    rec, desired = planned(tmp_path, paths)
    w = rec.wanted["corp"]
    paths.sssd_conf.write_text(w.sssd_conf)
    paths.sssd_conf.chmod(0o600)
    paths.sudoers("corp").write_text(w.sudoers)
    paths.sudoers("corp").chmod(0o440)
    paths.pam_session.write_text(pam_with_block(paths.pam_session.read_text(), "corp", "/etc/skel", "0077"))
    state = desired["corp"].state
    observed = rec._observe_one(node(tmp_path), "corp", None, state["membership"])
    assert observed["sssd"] == "stopped"  # no sssd in this test
    assert {k: v for k, v in observed.items() if k != "sssd"} == {k: v for k, v in state.items() if k != "sssd"}


def test_recorded_sssd_conf_from_the_lab_observes_as_desired(tmp_path, paths):
    rec, desired = planned(tmp_path, paths)
    paths.sssd_conf.write_text(fixture("sssd.conf.generated"))
    paths.sssd_conf.chmod(0o600)
    observed = rec._observe_one(node(tmp_path), "corp", None, None)
    section = observed["sssdConf"]["domain/corp.example.test"]
    assert (section["access_provider"], section["simple_allow_groups"]) == ("simple", "app-admins")
    assert section["fallback_homedir"] == "/home/%u"


# --- apply's guards, before anything changes -----------------------------------------------------


def test_missing_secret_file_is_a_clear_error_and_nothing_changes(tmp_path, paths):
    rec, desired = planned(tmp_path, paths, secret=str(tmp_path / "absent.password"))
    before = {p: p.read_text() for p in (paths.nsswitch, paths.pam_session)}
    n = node(tmp_path)
    change = Change("DomainJoin", "corp", "create", desired["corp"].state, None)
    outcome = rec.apply([change], n)[change.key]
    assert isinstance(outcome, ApplyError) and "absent.password does not exist" in str(outcome)
    assert n.runner.records == []  # not one command ran
    assert not paths.sssd_conf.exists() and not paths.sudoers("corp").exists()
    assert {p: p.read_text() for p in before} == before
    assert not (tmp_path / "state").exists()


def test_an_sssd_conf_reconcile_did_not_write_is_never_overwritten(tmp_path, paths):
    rec, desired = planned(tmp_path, paths)
    paths.sssd_conf.write_text("[sssd]\ndomains = other.test\n")
    n = node(tmp_path)
    outcome = rec.apply([Change("DomainJoin", "corp", "create", desired["corp"].state, None)], n)
    assert "was not written by reconcile" in str(outcome[("DomainJoin", "corp")])
    assert paths.sssd_conf.read_text() == "[sssd]\ndomains = other.test\n"
    assert n.runner.records == []


def test_without_a_record_our_sudo_rule_and_pam_block_are_still_seen_and_pruned(tmp_path, paths):
    # the record lost and the manifest removed (issue 21, item 2): the sudo rule must not
    # outlive git; the membership stays (its password reference was in the record)
    from reconcilers.domain import pam, sudoers

    paths.sudoers("corp").write_text(sudoers.render_sudoers("corp", ["%admins ALL=(ALL:ALL) ALL"]))
    session = paths.pam_session.read_text()
    paths.pam_session.write_text(pam.pam_with_block(session, "corp", "/etc/skel", "0077"))
    paths.keytab.write_bytes(b"\x05\x02")
    rec = DomainJoinReconciler(paths)
    n = node(tmp_path, dry_run=True)
    seen = rec.observe(n)["DomainJoin"]
    assert set(seen) == {"corp"} and seen["corp"]["sudo"] == ["%admins ALL=(ALL:ALL) ALL"]
    change = Change("DomainJoin", "corp", "delete", None, seen["corp"])
    assert "no record of how it joined" in rec.explain(change, n)[0]
    outcome = rec.apply([change], node(tmp_path))
    assert outcome[change.key] is None
    assert not paths.sudoers("corp").exists() and paths.pam_session.read_text() == session
    assert paths.keytab.read_bytes() == b"\x05\x02"  # not ours to remove without the record
    assert rec.observe(node(tmp_path, dry_run=True)) == {"DomainJoin": {}}


def test_prune_with_its_secret_gone_changes_nothing(tmp_path, paths):
    rec = DomainJoinReconciler(paths)
    marker = tmp_path / "state" / "domain-join" / "corp.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"name": "corp", "domain": "corp.example.test", "computerName": "LB1", "ou": None,
                                  "user": "Administrator", "password": {"file": str(tmp_path / "gone")},
                                  "keytabExisted": False, "nsswitchAdded": []}))
    paths.sssd_conf.write_text(f"# {GENERATED_HEADER}\n")
    n = node(tmp_path)
    outcome = rec.apply([Change("DomainJoin", "corp", "delete", None, {"membership": {}})], n)
    assert "does not exist" in str(outcome[("DomainJoin", "corp")])
    assert marker.exists() and paths.sssd_conf.exists() and n.runner.records == []


def test_observe_without_keytab_or_record_sees_nothing_and_runs_nothing(tmp_path, paths):
    rec, _ = planned(tmp_path, paths)
    n = node(tmp_path, dry_run=True)
    assert rec.observe(n) == {"DomainJoin": {}}
    assert n.runner.records == []


# --- schema errors: file:line and field ------------------------------------------------------


def test_example_manifest_is_valid():
    tree = load_tree(Path(__file__).resolve().parents[2] / "desired-state")
    assert [m.metadata.name for m in tree.of_kind("DomainJoin")] == ["corp"]


@pytest.mark.parametrize("kwargs, line, field", [
    ({"sudo": '["admins\\nALL"]'}, 9, "spec.sudoGroups[0]"),
    ({"sudo": "['admins ALL=(ALL) ALL']"}, 9, "spec.sudoGroups[0]"),
    ({"allow": "['ops, ALL=(ALL)']"}, 8, "spec.allowGroups[0]"),
    ({"domain": "'corp example.test'"}, 6, "spec.domain"),
    ({"secret": "relative/pw"}, 7, "spec.password.file"),
    ({"extra": "  homeDirectories: {pattern: /home/%x}\n"}, 10, "spec.homeDirectories.pattern"),
    ({"extra": "  homeDirectories: {pattern: /home/shared}\n"}, 10, "spec.homeDirectories.pattern"),
    ({"extra": "  homeDirectories: {umask: '77'}\n"}, 10, "spec.homeDirectories.umask"),
    ({"extra": "  computerName: way-too-long-for-netbios\n"}, 10, "spec.computerName"),
    ({"extra": "  ou: 'OU=x;rm -rf'\n"}, 10, "spec.ou"),
    ({"extra": "  accessProvider: ad\n"}, 5, "spec"),
    ({"sudo": "[Domain Admins, domain admins]"}, 9, "spec.sudoGroups[1]"),
])
def test_bad_input_is_refused_with_file_line_and_field(tmp_path, kwargs, line, field):
    problems = problems_of(write_join(tmp_path, **kwargs))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"join.yaml:{line}: {field}: "), problems[0]


def test_group_with_newline_message_says_what_is_allowed(tmp_path):
    (problem,) = problems_of(write_join(tmp_path, sudo='["admins\\nALL=(ALL) ALL"]'))
    assert "no newlines" in problem and "\n" not in problem.split(": ", 2)[2].split("(got")[0]


def test_json_schema_export_includes_domain_join():
    from schemas.export import json_schema

    text = json.dumps(json_schema("DomainJoin"))
    assert "allowGroups" in text and "homeDirectories" in text



def test_renamed_manifest_prunes_the_old_name_without_leaving_the_domain(tmp_path, paths):
    """The new name joined first (creates run before deletes); pruning the old name must
    not delete the account, keytab or sssd.conf the node still uses."""
    state = tmp_path / "state" / "domain-join"
    state.mkdir(parents=True)
    common = {"domain": "corp.example.test", "computerName": "LB1", "ou": None, "user": "Administrator",
              "password": {"file": str(tmp_path / "gone")}}
    (state / "old.json").write_text(json.dumps({"name": "old", "keytabExisted": False, "nsswitchAdded": ["shadow"],
                                                **common}))
    (state / "new.json").write_text(json.dumps({"name": "new", "keytabExisted": False, "nsswitchAdded": [],
                                                **common}))
    paths.keytab.write_text("keys")
    paths.sssd_conf.write_text(f"# {GENERATED_HEADER}\n")
    paths.sudoers("old").write_text(render_sudoers("old", [r"%web\ users ALL=(ALL:ALL) ALL"]))
    paths.pam_session.write_text(pam_with_block(fixture("common-session.debian"), "old", "/etc/skel", "0077"))
    rec = DomainJoinReconciler(paths)
    n = node(tmp_path)
    assert rec.apply([Change("DomainJoin", "old", "delete", None, {"membership": {}})], n) == {("DomainJoin", "old"): None}
    assert [r for r in n.runner.records if r.what == "exec"] == []  # no adcli delete-computer, no sssd stop
    assert paths.keytab.exists() and paths.sssd_conf.exists()
    assert not paths.sudoers("old").exists() and not (state / "old.json").exists()
    assert paths.pam_session.read_text() == fixture("common-session.debian")
    assert json.loads((state / "new.json").read_text())["nsswitchAdded"] == ["shadow"]  # handed over


def test_watch_reports_an_edit_of_a_managed_file_and_not_of_others(tmp_path, paths):
    stop = threading.Event()
    events: list[str] = []
    seen = threading.Event()

    def consume():
        for reason in DomainJoinReconciler(paths).watch(node(tmp_path, dry_run=True), stop=stop):
            events.append(reason)
            seen.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        time.sleep(0.15)  # the watch is set up
        (paths.sudoers_dir / "README").write_text("not ours\n")
        paths.sudoers("corp").write_text("%carol ALL=(ALL:ALL) ALL\n")
        assert seen.wait(5)
    finally:
        stop.set()
        thread.join(5)
    assert events == [f"changed: {paths.sudoers('corp')}"]


@pytest.mark.parametrize("content", ["{not json", "[]", '{"name": "other"}'])
def test_a_damaged_record_of_the_join_is_an_error_naming_it_never_skipped(tmp_path, paths, content):
    """Issue 21, item 2: read as missing, a removal from git would silently keep the join."""
    marker = tmp_path / "state" / "domain-join" / "corp.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(content)
    rec, _ = planned(tmp_path, paths)
    n = node(tmp_path, dry_run=True)
    with pytest.raises(ApplyError, match=rf"{marker}: (cannot be read|is damaged).*move it aside"):
        rec.observe(n)
    assert n.runner.records == []


# --- sssd's responders and its unit under systemd --------------------------------------------


def test_sssd_conf_leaves_out_the_responders_the_node_starts_from_their_sockets(tmp_path, paths):
    """Debian enables sssd-nss.socket, sssd-pam.socket, … with sssd: a responder listed in
    `services` as well makes its socket fail (the node is `degraded`)."""
    rec, _ = planned(tmp_path, paths)
    a = rec.wanted["corp"]
    assert "services = nss, pam\n" in a.sssd_conf  # desired: pure, the same on every machine
    wants = tmp_path / "sssd.service.wants"
    wants.mkdir()
    (wants / "sssd-nss.socket").symlink_to("/lib/systemd/system/sssd-nss.socket")
    assert sssd.socket_activated(wants) == {"nss"}
    assert "services = pam\n" in sssd.render_sssd_conf("corp", a.spec, a.computer, sockets=sssd.socket_activated(wants))
    for r in ("pam", "sudo", "ssh", "pac", "autofs"):
        (wants / f"sssd-{r}.socket").symlink_to(f"/lib/systemd/system/sssd-{r}.socket")
    on_node = sssd.render_sssd_conf("corp", a.spec, a.computer, sockets=sssd.socket_activated(wants))
    assert "services" not in on_node
    assert on_node == a.sssd_conf.replace("services = nss, pam\n", "")


def test_a_file_written_for_socket_activated_responders_reads_as_the_desired_one(tmp_path, paths):
    rec, desired = planned(tmp_path, paths)
    a = rec.wanted["corp"]
    every = frozenset(sssd.SOCKET_RESPONDERS)
    wanted = a.state["sssdConf"]["sssd"]["services"]
    on_node = sssd.render_sssd_conf("corp", a.spec, a.computer, sockets=every)
    assert sssd.normalized(on_node, {}, every, wanted) == desired["corp"].state["sssdConf"]
    # the packages' sockets and a file that lists them too (written before, or by hand): drift
    both = sssd.normalized(a.sssd_conf, {}, every, wanted)["sssd"]["services"]
    assert both == "nss, pam (also started from sockets: nss, pam: those sockets fail)"
    # without systemd nothing is socket-activated: the file lists them, as desired says
    assert sssd.normalized(a.sssd_conf, {}, frozenset(), wanted) == desired["corp"].state["sssdConf"]


def test_an_explicit_services_list_keeps_the_responders_that_have_no_socket(tmp_path, paths):
    rec, desired = planned(tmp_path, paths, extra='  options:\n    sssd: {services: "nss,pam, ifp"}\n')
    a = rec.wanted["corp"]
    assert desired["corp"].state["sssdConf"]["sssd"]["services"] == "nss, pam, ifp"
    sockets = frozenset({"nss", "pam"})
    on_node = sssd.render_sssd_conf("corp", a.spec, a.computer, sockets=sockets)
    assert "services = ifp\n" in on_node
    assert sssd.normalized(on_node, {}, sockets, "nss, pam, ifp") == desired["corp"].state["sssdConf"]


def test_sssd_conf_without_services_passes_sssctl(tmp_path, paths):
    rec, _ = planned(tmp_path, paths)
    a = rec.wanted["corp"]
    candidate = tmp_path / "sssd.conf"
    candidate.write_text(sssd.render_sssd_conf("corp", a.spec, a.computer, sockets=frozenset(sssd.SOCKET_RESPONDERS)))
    candidate.chmod(0o600)
    check_sssd_conf(node(tmp_path, dry_run=True), candidate, paths.sssd_snippets)  # raises if refused


def test_sssd_that_does_not_start_at_boot_is_drift_and_an_operators_hold_says_so(tmp_path):
    pid = tmp_path / "sssd.pid"
    conf = tmp_path / "sssd.conf"
    conf.write_text("")
    enabled = UnitState("sssd.service", "loaded", "inactive", "enabled", "enabled")
    assert daemon.status(pid, conf, enabled) == "stopped"  # the process, as without systemd
    held = daemon.status(pid, conf, UnitState("sssd.service", "loaded", "inactive", "disabled", "enabled"))
    assert held == "stopped (sssd.service is disabled on this node (its package enables it): not started at boot)"
    assert not daemon.starts_at_boot(held) and daemon.starts_at_boot("running")
    masked = daemon.status(pid, conf, UnitState("sssd.service", "masked", "inactive", "masked", "enabled"))
    assert "masked" in masked and not daemon.starts_at_boot(masked)
