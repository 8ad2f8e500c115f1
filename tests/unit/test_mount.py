"""Mount without mounting: options per type, units, argv, parsers of what the real tools
printed in a lab node (tests/fixtures/mount/), ownership by record, and the credential
files (written in a temp folder; rclone obscures for real)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconcilers.base import ApplyError, Node, Runner
from reconcilers.mount import credentials, fuse
from reconcilers.mount.apply import units_for, verify_units
from reconcilers.mount.model import (
    SECRET_DIFFERS, SECRET_IN_SYNC, Paths, desired_state, entry, flags_only, rclone_options,
)
from reconcilers.mount.observe import (
    MountInfo, Probe, fs_identity, is_ours, observed_state, parse_mountinfo, parse_stat, top_mounts,
)
from reconcilers.mount.render import (
    automount_unit, fstab_line, mount_argv, mount_unit, parse_rclone_conf, remount_flags_argv, unit_name,
)
from schemas.mount import MountSpec
from tests.readonly_allowlist import allowed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mount"
NO_IDS = lambda owner, group: (None, None)  # noqa: E731
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def spec(**kw) -> MountSpec:
    base = {"node": "lb1", "path": "/mnt/reports"}
    base.update(kw)
    return MountSpec.model_validate(base)


def sshfs(**kw) -> MountSpec:
    return spec(type="sshfs", sshfs={"host": "192.0.2.12", "user": "files", "path": "reports",
                                     "identity": {"file": "/etc/reconcile/secrets/k"}}, **kw)


def rclone(secrets=None, **kw) -> MountSpec:
    remote = {"type": "sftp", "options": {"host": "192.0.2.12", "user": "files"},
              "secrets": secrets if secrets is not None else {"pass": {"file": "/etc/reconcile/secrets/p"}}}
    return spec(type="rclone", rclone={"remote": remote, "path": "reports", "flags": {"vfs-cache-mode": "writes"}}, **kw)


# --- options, units, argv ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mnt/reports", "/mnt/re-ports", "/srv/a@b+c.d_e/.x", "/home/x_y/Z9"])
def test_unit_names_are_what_systemd_escape_gives(path):
    want = subprocess.run(["systemd-escape", "--path", "--suffix=mount", path], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert unit_name(path, "mount") == want


def test_sshfs_options_name_the_identity_file_and_always_check_host_keys():
    e = entry("reports", sshfs(readOnly=True, allowOther=True, owner="root", mode="0750", options=["noexec"]),
              Paths(), lambda o, g: (0, 0))
    assert e.what == "files@192.0.2.12:reports" and e.fstype == "fuse.sshfs"
    assert "IdentityFile=/etc/reconcile/mount/reports/identity" in e.options
    assert {"StrictHostKeyChecking=yes", "BatchMode=yes", "IdentitiesOnly=yes", "ro", "allow_other",
            "default_permissions", "uid=0", "gid=0", "umask=027", "noexec", "reconnect"} <= set(e.options)
    argv = mount_argv(e)
    assert argv[:3] == ["sshfs", "files@192.0.2.12:reports", "/mnt/reports"] and argv[3] == "-o"
    assert fstab_line(e).startswith("files@192.0.2.12:reports /mnt/reports fuse.sshfs IdentityFile=")


def test_rclone_runs_as_its_own_daemon_with_reconciles_config_and_typed_permissions():
    s = rclone(allowOther=True, owner="root", group="root", mode="0750", readOnly=True)
    argv = mount_argv(entry("reports", s, Paths(), lambda o, g: (0, 0)), rclone_options("reports", s, Paths(), lambda o, g: (0, 0)))
    assert argv[:4] == ["rclone", "mount", "reports:reports", "/mnt/reports"]
    joined = " ".join(argv)
    for part in ("--config=/etc/reconcile/mount/reports/rclone.conf", "--cache-dir=/var/cache/reconcile/mount/reports",
                 "--read-only", "--allow-other", "--default-permissions", "--uid=0", "--gid=0", "--umask=0",
                 "--dir-perms=0750", "--file-perms=0640", "--vfs-cache-mode=writes", "--daemon --daemon-wait=30s"):
        assert part in joined
    e = entry("reports", s, Paths(), lambda o, g: (0, 0))  # the same settings as mount-helper options
    assert e.fstype == "rclone" and "config=/etc/reconcile/mount/reports/rclone.conf" in e.options


@pytest.mark.parametrize("kind,block,want", [
    ("nfs", {"server": "192.0.2.5", "export": "/srv/nfs", "version": "4.1"},
     ["mount", "-t", "nfs", "-o", "vers=4.1,noatime", "192.0.2.5:/srv/nfs", "/mnt/reports"]),
    ("cifs", {"server": "files.example.test", "share": "reports", "user": "app", "password": {"env": "CIFS_PW"}},
     ["mount", "-t", "cifs", "-o", "credentials=/etc/reconcile/mount/reports/cifs.credentials,noatime",
      "//files.example.test/reports", "/mnt/reports"]),
    ("bind", {"source": "/srv/data"}, ["mount", "-o", "bind,noatime", "/srv/data", "/mnt/reports"]),
    ("tmpfs", {"size": "64M"}, ["mount", "-t", "tmpfs", "-o", "size=64M,noatime", "tmpfs", "/mnt/reports"]),
])
def test_kernel_mounts_are_one_mount_command_with_one_option_list(kind, block, want):
    s = spec(type=kind, options=["noatime"], **{kind: block})
    assert mount_argv(entry("reports", s, Paths(), NO_IDS)) == want


def test_mount_units_say_what_where_type_and_come_back_at_boot_or_on_access():
    s = sshfs(onBusy="lazy")
    e = entry("reports", s, Paths(), NO_IDS)
    text = mount_unit(e, network=True, lazy=True, automount=False)
    assert "# reconcile-managed: Mount/reports" in text and "LazyUnmount=yes" in text
    assert "What=files@192.0.2.12:reports\nWhere=/mnt/reports\nType=fuse.sshfs\n" in text
    assert text.rstrip().endswith("WantedBy=remote-fs.target") and "_netdev" in text
    auto = automount_unit(e, idle="10m", network=True)
    assert "Where=/mnt/reports" in auto and "TimeoutIdleSec=10m" in auto
    assert "[Install]" not in mount_unit(e, network=True, lazy=False, automount=True)


def test_rendered_units_pass_systemd_analyze_verify():
    node = Node("lb1", Runner())
    for s in (sshfs(automount={"idleTimeout": "5m"}), spec(type="tmpfs", mode="1777"),
              spec(type="bind", bind={"source": "/srv/data"}, readOnly=True)):
        assert verify_units(node, units_for("reports", s, entry("reports", s, Paths(), NO_IDS))) == []


def test_flags_are_changed_with_a_bind_remount_that_never_unmounts():
    assert remount_flags_argv("/mnt/r", ["noexec"], True) == ["mount", "-o", "remount,bind,ro,noexec", "/mnt/r"]


# --- what the tools printed ------------------------------------------------------------------


def recorded_mounts() -> dict[str, MountInfo]:
    return top_mounts(parse_mountinfo((FIXTURES / "mountinfo-lab-node.txt").read_text()))


def test_mountinfo_of_a_lab_node_is_parsed_with_escapes_flags_and_fuse_options():
    top = recorded_mounts()
    r, s, b = top["/mnt/reports"], top["/mnt/reports-sshfs"], top["/mnt/b"]
    assert (r.fstype, r.source) == ("fuse.rclone", "reports:reports") and "allow_other" in r.super_options
    assert (s.fstype, s.source) == ("fuse.sshfs", "files@192.0.2.12:reports")
    assert {"ro", "noexec", "nosuid", "nodev"} <= s.flags
    assert b.root == "/tmp/my src" and "ro" in b.flags  # \040 is a space
    assert top["/mnt/t"].fstype == "tmpfs"


def test_stat_tells_a_dead_fuse_mount_from_a_live_one_and_a_missing_path():
    paths = ["/mnt/reports", "/mnt/reports-sshfs", "/mnt/t", "/mnt/b", "/var/tmp/my src", "/mnt/nope"]
    got = parse_stat((FIXTURES / "stat-cached-never.out").read_text(), (FIXTURES / "stat-cached-never.err").read_text(), paths)
    assert got["/mnt/reports-sshfs"].error == "dead" and got["/mnt/nope"].error == "missing"
    assert (got["/mnt/t"].mode, got["/mnt/reports"].uid) == (0o1777, 0)
    assert (got["/mnt/b"].dev, got["/mnt/b"].ino) == (got["/var/tmp/my src"].dev, got["/var/tmp/my src"].ino)


def record_for(live: MountInfo, **kw) -> dict:
    from reconcilers.mount.observe import boot_id

    rec = {"name": "reports", "path": live.point, "type": "rclone", "source": live.source,
           "options": ["vfs-cache-mode=writes"], "systemd": False, "boot": boot_id(), "mountId": live.id,
           "fs": fs_identity(live)}
    rec.update(kw)
    return rec


def test_a_mount_is_ours_only_when_its_id_and_what_the_kernel_shows_match_the_record():
    live = recorded_mounts()["/mnt/reports"]
    rec = record_for(live)
    assert is_ours(rec, live, None)
    # the id is reused by a bind mount made by hand after ours went away: not ours
    hand = MountInfo(live.id, live.parent, "/tmp/src", live.point, frozenset({"rw"}), "overlay", "overlay", frozenset())
    assert not is_ours(rec, hand, None)
    assert not is_ours(dict(rec, boot="another boot"), live, None)
    assert not is_ours(None, live, None)


def test_a_mount_recorded_before_its_command_ran_is_ours_when_the_kernel_shows_what_it_mounts():
    # a run killed after `mount` and before it wrote the mount id left a pending record
    live = recorded_mounts()["/mnt/reports"]
    pending = record_for(live, mountId=None, fs=None, pending=True)
    assert is_ours(pending, live, None)
    hand = MountInfo(live.id, live.parent, "/", live.point, frozenset({"rw"}), "tmpfs", "tmpfs", frozenset())
    assert not is_ours(pending, hand, None)  # another file system made there by hand
    assert not is_ours(dict(pending, boot="another boot"), live, None)


def test_observed_state_of_our_live_rclone_mount_equals_the_desired_one():
    s = rclone(allowOther=True, owner="root", group="root", mode="0755")
    want = desired_state("reports", s, systemd=False)
    live = recorded_mounts()["/mnt/reports"]
    have = observed_state(want, record_for(live), live, Probe(0, 0, 0o755, 1, 1), None, True,
                          {"credentials": SECRET_IN_SYNC})
    assert have == want


def test_a_dead_fuse_mount_and_a_flipped_flag_show_as_drift_the_plan_can_name():
    s = sshfs(readOnly=True, options=["noexec", "nosuid", "nodev"])
    want = desired_state("reports-sshfs", s, systemd=False)
    live = recorded_mounts()["/mnt/reports-sshfs"]
    rec = record_for(live, type="sshfs", options=["noexec", "nosuid", "nodev"], name="reports-sshfs")
    dead = observed_state(want, rec, live, Probe(error="dead"), None, True, {"credentials": SECRET_IN_SYNC})
    assert dead["state"] == "dead" and {k: v for k, v in dead.items() if k != "state"} == \
        {k: v for k, v in want.items() if k != "state"}
    exec_again = MountInfo(live.id, live.parent, live.root, live.point, frozenset({"rw", "nosuid", "nodev"}),
                           live.fstype, live.source, live.super_options)
    have = observed_state(want, rec, exec_again, Probe(1001, 1001, 0o755, 1, 1), None, True,
                          {"credentials": SECRET_IN_SYNC})
    assert (have["readOnly"], have["options"]) == (False, ["nosuid", "nodev"])
    assert flags_only(want, rec, have)  # a bind remount repairs it, no unmount
    assert not flags_only(want, dict(rec, options=["nosuid"]), have)


def test_a_mount_someone_else_made_is_foreign_and_absent_means_none_of_ours():
    live = recorded_mounts()["/mnt/b"]
    want = desired_state("b", spec(path="/mnt/b", type="tmpfs"), systemd=False)
    assert observed_state(want, None, live, None, None, False)["state"] == "foreign"
    absent = desired_state("b", spec(path="/mnt/b", type="tmpfs", state="absent"), systemd=False)
    assert observed_state(absent, None, None, None, None, False) == absent
    assert observed_state(want, None, None, None, None, False) is None  # never mounted: a create


def test_a_bind_mount_is_recognised_by_the_inode_of_its_source():
    live = recorded_mounts()["/mnt/b"]
    s = spec(path="/mnt/b", type="bind", bind={"source": "/var/tmp/my-src"}, readOnly=True)
    want = desired_state("b", s, systemd=False)
    rec = record_for(live, type="bind", source="/var/tmp/my-src", options=[], name="b")
    same = observed_state(want, rec, live, Probe(0, 0, 0o755, 63, 7), Probe(0, 0, 0o755, 63, 7), True)
    other = observed_state(want, rec, live, Probe(0, 0, 0o755, 63, 7), Probe(0, 0, 0o755, 63, 8), True)
    assert same["source"] == "/var/tmp/my-src" and same == want
    assert other["source"] != want["source"]


# --- rclone as native validator ----------------------------------------------------------------


def test_rclone_knows_its_backends_options_passwords_and_mount_flags():
    backends = fuse.parse_providers((FIXTURES / "rclone-config-providers.json").read_text())
    flags = fuse.parse_mount_flags((FIXTURES / "rclone-mount-help.txt").read_text())
    assert backends["sftp"]["pass"] and not backends["drive"]["token"] and backends["sftp"]["key_file_pass"]
    assert {"vfs-cache-mode", "dir-cache-time", "daemon", "allow-other", "poll-interval"} <= flags
    assert fuse.check_rclone(rclone(), backends, flags) == []
    bad = spec(type="rclone", rclone={"remote": {"type": "sftp", "options": {"hots": "x"}}, "flags": {"vfs-cache-mod": "x"}})
    out = fuse.check_rclone(bad, backends, flags)
    assert any("no option 'hots'" in p for p in out) and any("no flag --vfs-cache-mod" in p for p in out)
    assert "no backend 'gdrive'" in fuse.check_rclone(
        spec(type="rclone", rclone={"remote": {"type": "gdrive"}}), backends, flags)[0]


def test_secrets_become_one_rclone_config_line():
    assert fuse.config_value("token", '{\n "access_token": "a",\n "expiry": "x"\n}\n') == '{"access_token":"a","expiry":"x"}'
    assert fuse.config_value("key_pem", KEY) == KEY.strip().replace("\n", "\\n")
    with pytest.raises(ApplyError, match="several lines"):
        fuse.config_value("pass", "a\nb")


# --- credential files ------------------------------------------------------------------------


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(config=tmp_path / "etc", cache=tmp_path / "cache", units=tmp_path / "units",
                 known_hosts=tmp_path / "known_hosts")


def with_secret_file(tmp_path: Path, name: str, text: str) -> str:
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_an_sshfs_identity_is_written_0600_compared_inside_and_rotated(tmp_path, paths):
    key = with_secret_file(tmp_path, "key", KEY)
    s = spec(type="sshfs", sshfs={"host": "h", "user": "u", "identity": {"file": key},
                                  "hostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdx"]})
    node = Node("lb1", Runner(recording=True))
    assert credentials.credentials_state("m", s, paths, node) == SECRET_DIFFERS
    assert credentials.install("m", s, paths, node)
    f = paths.identity("m")
    assert f.read_text() == KEY and f.stat().st_mode & 0o777 == 0o600
    assert paths.folder("m").stat().st_mode & 0o777 == 0o700
    assert paths.host_keys("m").read_text() == "h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdx\n"
    assert credentials.credentials_state("m", s, paths, node) == SECRET_IN_SYNC
    assert not credentials.install("m", s, paths, node)  # nothing to do
    Path(key).write_text(KEY.replace("AAAAA", "BBBBB"))
    assert credentials.credentials_state("m", s, paths, node) == SECRET_DIFFERS
    assert [r for r in node.runner.records if r.what == "exec"] == []  # no command saw the key


def test_a_cifs_password_goes_to_a_credentials_file_only(tmp_path, paths, monkeypatch):
    monkeypatch.setenv("CIFS_PW", "hunter2-very-secret")
    s = spec(type="cifs", cifs={"server": "f", "share": "r", "user": "app", "domain": "CORP", "password": {"env": "CIFS_PW"}})
    node = Node("lb1", Runner())
    credentials.install("m", s, paths, node)
    assert paths.cifs_credentials("m").read_text() == "username=app\npassword=hunter2-very-secret\ndomain=CORP\n"
    assert "hunter2" not in " ".join(entry("m", s, paths, NO_IDS).options)


def test_rclone_passwords_are_obscured_and_rclones_own_rewrites_are_not_drift(tmp_path, paths):
    pw = with_secret_file(tmp_path, "pw", "Lab-Sftp.Pass-2024\n")
    token = with_secret_file(tmp_path, "token", '{"access_token":"a1","refresh_token":"r1"}')
    s = rclone(secrets={"pass": {"file": pw}, "token": {"file": token}})  # a token on sftp: just a plain secret here
    node = Node("lb1", Runner(recording=True))
    assert credentials.install("m", s, paths, node)
    conf = paths.rclone_conf("m")
    text = conf.read_text()
    section = parse_rclone_conf(text)["m"]
    assert "Lab-Sftp" not in text and section["pass"] and section["token"] == '{"access_token":"a1","refresh_token":"r1"}'
    assert section["known_hosts_file"] == str(paths.known_hosts)  # host keys are always checked
    assert conf.stat().st_mode & 0o777 == 0o600 and paths.digest("m").stat().st_mode & 0o777 == 0o600
    assert credentials.credentials_state("m", s, paths, node) == SECRET_IN_SYNC
    # rclone refreshes the token and adds what it detected: still in sync
    conf.write_text(text.replace('"a1"', '"a2"') + "shell_type = unix\n")
    assert credentials.credentials_state("m", s, paths, node) == SECRET_IN_SYNC
    # a rotated password, or a plain option edited by hand: differs
    Path(pw).write_text("another one")
    assert credentials.credentials_state("m", s, paths, node) == SECRET_DIFFERS
    Path(pw).write_text("Lab-Sftp.Pass-2024\n")
    conf.write_text(text.replace("user = files", "user = root"))
    assert credentials.credentials_state("m", s, paths, node) == SECRET_DIFFERS
    # the password went to rclone obscure on stdin, never in argv
    obscures = [r.argv for r in node.runner.records if r.argv[:2] == ["rclone", "obscure"]]
    assert obscures == [["rclone", "obscure", "-", "--config", "/dev/null"]]
    assert all("Lab-Sftp" not in " ".join(r.argv) for r in node.runner.records)


def test_the_commands_a_dry_run_of_mounts_runs_are_on_the_read_only_allow_list():
    for argv in (["stat", "--cached=never", "-c", "%u %g %a %d %i %n", "--", "/mnt/reports", "/srv/a@b"],
                 ["rclone", "config", "providers", "--config", "/dev/null"],
                 ["rclone", "mount", "--help", "--config", "/dev/null"],
                 ["systemd-analyze", "verify", "/tmp/reconcile-units-abc_1/mnt-reports.mount"],
                 ["systemd-analyze", "verify", "/tmp/reconcile-units-abc_1/mnt-reports.mount",
                  "/tmp/reconcile-units-abc_1/mnt-reports\\x2dsshfs.automount"]):
        assert allowed("exec", argv), argv
    for argv in (["umount", "/mnt/reports"], ["rclone", "mount", "r:", "/mnt/r", "--daemon"],
                 ["rclone", "obscure", "-", "--config", "/dev/null"], ["systemctl", "start", "mnt-reports.mount"],
                 ["systemd-analyze", "verify", "/tmp/reconcile-units-a/mnt-x.mount'; rm -rf '/"],
                 ["systemd-analyze", "verify", "'/tmp/reconcile-units-a/mnt-x.mount"]):
        assert not allowed("exec", argv), argv


def test_an_automount_systemd_armed_but_nobody_used_yet_is_ours_and_in_sync():
    s = sshfs(automount={"idleTimeout": "5m"})
    want = desired_state("reports", s, systemd=True)
    assert want["automount"] == "5m"
    autofs = MountInfo(90, 30, "/", "/mnt/reports", frozenset({"rw"}), "autofs", "systemd-1", frozenset({"fd=45"}))
    rec = {"name": "reports", "path": "/mnt/reports", "type": "sshfs", "source": "files@192.0.2.12:reports",
           "systemd": True, "units": ["mnt-reports.automount", "mnt-reports.mount"]}
    unit = "# reconcile-managed: Mount/reports\n[Mount]\n"
    assert is_ours(rec, autofs, unit) and not is_ours(rec, autofs, "[Mount]\n")
    assert observed_state(want, rec, autofs, None, None, True) == want


def test_an_armed_automount_still_compares_its_units_and_credentials():
    want = desired_state("reports", sshfs(), systemd=True)  # no automount (any more)
    autofs = MountInfo(90, 30, "/", "/mnt/reports", frozenset({"rw"}), "autofs", "systemd-1", frozenset({"fd=45"}))
    rec = {"name": "reports", "path": "/mnt/reports", "type": "sshfs", "source": "files@192.0.2.12:reports",
           "systemd": True, "units": ["mnt-reports.automount", "mnt-reports.mount"]}
    have = observed_state(want, rec, autofs, None, None, True, {"automount": "5m", "credentials": SECRET_DIFFERS})
    assert (want["automount"], have["automount"]) == ("off", "5m")
    assert have["credentials"] == SECRET_DIFFERS and have["state"] == "mounted"


def test_units_of_ours_left_without_a_mount_are_seen_until_they_are_removed():
    """Stopped by hand or failed to start: enabled, the units would mount it again at boot,
    so a mount removed from git (or now absent) still has something to delete."""
    rec = {"name": "reports", "path": "/mnt/reports", "type": "sshfs", "source": "files@192.0.2.12:reports",
           "systemd": True, "units": ["mnt-reports.mount"]}
    absent = desired_state("reports", sshfs(state="absent"), systemd=True)
    mounted = desired_state("reports", sshfs(), systemd=True)
    left = {"path": "/mnt/reports", "state": "unmounted"}
    assert observed_state(None, rec, None, None, None, False, units_left=True) == left
    assert observed_state(absent, rec, None, None, None, False, units_left=True) == left
    assert observed_state(mounted, rec, None, None, None, False, units_left=True) is None  # a (re)create
    assert observed_state(None, rec, None, None, None, False) is None  # nothing of ours there
    assert observed_state(absent, rec, None, None, None, False) == absent


def test_the_fuse_daemons_of_systemds_mount_helpers_are_found_as_the_tools_own():
    """argv as `ps` showed them in a systemd lab node (mount units) and an init-less one."""
    paths = {"/mnt/reports", "/mnt/reports-sshfs"}
    helper = ["/sbin/mount.fuse.sshfs", "files@192.0.2.12:reports", "/mnt/reports-sshfs", "-o", "ro,noexec,_netdev"]
    rclone_again = ["/usr/bin/rclone", "mount", "reports:reports", "/mnt/reports", "--config=/etc/x", "--daemon"]
    direct = ["sshfs", "files@192.0.2.12:reports", "/mnt/reports-sshfs", "-o", "ro"]
    assert [fuse.served_path(a, paths) for a in (helper, rclone_again, direct)] == \
        ["/mnt/reports-sshfs", "/mnt/reports", "/mnt/reports-sshfs"]
    ssh = ["ssh", "-x", "-a", "-2", "-s", "--", "files@192.0.2.12", "sftp"]
    reader = ["/usr/bin/cat", "/mnt/reports/README.txt"]
    assert [fuse.served_path(a, paths) for a in (ssh, reader, [], ["/sbin/mount.fuse.sshfs", "/mnt/other"])] == \
        [None, None, None, None]


# --- the quoting functions: the second line of defence behind the schema -------------------------


@pytest.mark.parametrize("value", ["a,b", "a b", "a'b", 'a"b', "a\\b", "a\nb", "", "a\u202eb"])
def test_a_mount_option_that_would_become_two_or_break_the_line_is_refused(value):
    from reconcilers.base import UnsafeValue
    from reconcilers.mount.render import mount_option

    with pytest.raises(UnsafeValue):
        mount_option(value)


def test_unit_values_double_percent_and_refuse_what_changes_the_line():
    from reconcilers.base import UnsafeValue
    from reconcilers.mount.render import fstab_field, known_hosts_word, unit_value

    assert unit_value("size=10%") == "size=10%%"  # systemd would expand %-specifiers
    for bad in ("x\\", " x", "x\ny"):
        with pytest.raises(UnsafeValue):
            unit_value(bad)
    assert fstab_field("/srv/my dir#1") == "/srv/my\\040dir\\0431"
    for bad in ("a,b", "a b", "*.example", "!x"):
        with pytest.raises(UnsafeValue):
            known_hosts_word(bad)


def test_a_refused_secret_is_never_shown_in_the_message():
    from reconcilers.base import UnsafeValue
    from reconcilers.mount.render import cifs_credentials, rclone_conf

    for render in (lambda: rclone_conf("m", "sftp", {"pass": "hunter2\nx = y"}, frozenset({"pass"})),
                   lambda: rclone_conf("m", "sftp", {"pass": '"hunter2'}, frozenset({"pass"})),
                   lambda: cifs_credentials("app", "hunter2\ndomain=EVIL", None)):
        with pytest.raises(UnsafeValue) as err:
            render()
        assert "hunter2" not in str(err.value) and "the secret for" in str(err.value)
