"""Service units (reconcilers/base.py), the agent's journal entries (controller/journal.py),
its unit and installer (controller/service.py) and which units a systemd lab node masks
(controller/lab/systemd_node.py): parsers and renderers on recorded output, real sockets
and files. The systemctl paths themselves run on real systemd in tests/lab."""
from __future__ import annotations

import hashlib
import logging
import socket
import struct
import sys
from pathlib import Path

import pytest

from controller import journal, service
from controller.lab import systemd_node
from reconcilers.base import DryRunViolation, Held, Node, Runner, UnitState, enable_unit, parse_unit_states

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UNITS = ["haproxy.service", "keepalived.service", "sssd.service", "nosuch.service"]


# --- unit states -----------------------------------------------------------------------------

def test_systemctl_show_is_read_per_unit_in_the_order_asked():
    states = parse_unit_states((FIXTURES / "systemd" / "show-units.txt").read_text(), UNITS)
    assert states["haproxy.service"] == UnitState("haproxy.service", "loaded", "active", "enabled", "enabled")
    assert states["keepalived.service"].enabled == "masked" and states["keepalived.service"].active == "active"
    assert (states["sssd.service"].enabled, states["sssd.service"].active) == ("disabled", "inactive")
    assert states["nosuch.service"].load == "not-found"


@pytest.mark.parametrize("state, held", [
    (UnitState("a.service", "loaded", "active", "enabled", "enabled"), None),
    (UnitState("a.service", "masked", "inactive", "masked", "enabled"), "a.service is masked on this node"),
    (UnitState("a.service", "masked", "active", "masked-runtime", "enabled"), "a.service is masked on this node"),
    (UnitState("a.service", "loaded", "active", "disabled", "enabled"),
     "a.service is disabled on this node (its package enables it)"),
    # a distribution that leaves the unit disabled at install: enabling it is installing it
    (UnitState("a.service", "loaded", "inactive", "disabled", "disabled"), None),
    (UnitState("a.service", "loaded", "active", "static", ""), None),
])
def test_a_unit_is_held_when_masked_or_disabled_against_its_package(state, held):
    assert state.held == held


def test_a_held_unit_raises_held_and_runs_nothing():
    node = Node("lb1", Runner(dry_run=True, recording=True))
    with pytest.raises(Held, match=r"masked on this node: reconcile leaves it so .*metadata.drift: enforce"):
        enable_unit(node, UnitState("haproxy.service", "masked", "inactive", "masked", "enabled"), enforce=False)
    assert node.runner.records == []
    enable_unit(node, UnitState("haproxy.service", "loaded", "active", "enabled", "enabled"), enforce=False)
    assert node.runner.records == []  # enabled already: nothing to do


def test_enforce_unmasks_then_enables():
    node = Node("lb1", Runner(dry_run=True, recording=True))  # the dry-run guard stops at the first command
    with pytest.raises(DryRunViolation, match="systemctl unmask haproxy.service"):
        enable_unit(node, UnitState("haproxy.service", "masked", "inactive", "masked", "enabled"), enforce=True)
    with pytest.raises(DryRunViolation, match="systemctl enable sssd.service"):
        enable_unit(node, UnitState("sssd.service", "loaded", "inactive", "disabled", "enabled"), enforce=True)
    with pytest.raises(DryRunViolation, match="systemctl enable x.service"):  # not held: enabled as installed
        enable_unit(node, UnitState("x.service", "loaded", "inactive", "disabled", "disabled"), enforce=False)


# --- the journal -----------------------------------------------------------------------------

def parse_entry(data: bytes) -> dict[str, str]:
    """The native protocol, read back as journald does."""
    fields, i = {}, 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = end + 1
        else:
            size = struct.unpack("<Q", data[end + 1:end + 9])[0]
            fields[line.decode()] = data[end + 9:end + 9 + size].decode()
            i = end + 9 + size + 1
    return fields


def test_a_multi_line_value_is_sent_with_its_length():
    data = journal.encode({"MESSAGE": "one\ntwo", "PRIORITY": "6"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 7) + b"one\ntwo\nPRIORITY=6\n"
    assert parse_entry(data) == {"MESSAGE": "one\ntwo", "PRIORITY": "6"}


def test_entries_carry_the_revision_and_the_object_as_fields(tmp_path):
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        handler = journal.JournalHandler(path)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("reconcile.test-journal")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
        try:
            log.warning("  %s/%s: %s", "Frontend", "web", "failed",
                        extra={"revision": "a" * 40, "object": "Frontend/web", "status": "failed"})
            log.info("revision %s (signal): in-sync", "abc", extra={"revision": "b" * 40, "trigger": "signal"})
        finally:
            log.removeHandler(handler)
            handler.close()
        first, second = (parse_entry(server.recv(65536)) for _ in range(2))
    assert first["MESSAGE"] == "  Frontend/web: failed" and first["PRIORITY"] == "4"
    assert (first["RECONCILE_OBJECT"], first["RECONCILE_REVISION"], first["RECONCILE_STATUS"]) == \
        ("Frontend/web", "a" * 40, "failed")
    assert first["SYSLOG_IDENTIFIER"] == "reconcile" and first["CODE_FUNC"] == "test_entries_carry_the_revision_and_the_object_as_fields"
    assert second["RECONCILE_TRIGGER"] == "signal" and "RECONCILE_OBJECT" not in second and second["PRIORITY"] == "6"


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path, monkeypatch):
    out = open(tmp_path / "stderr", "w")
    monkeypatch.setattr(sys, "stderr", out)
    st = Path(tmp_path / "stderr").stat()
    assert journal.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not journal.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})  # redirected
    assert not journal.stderr_is_journal({})
    out.close()


# --- the agent's unit ------------------------------------------------------------------------

def test_contrib_unit_is_the_one_install_writes():
    assert service.CONTRIB.read_text() == service.example_unit()


def test_exec_start_arguments_are_quoted_for_systemd():
    assert service.systemd_quote("/srv/repo") == "/srv/repo"
    assert service.systemd_quote("/srv/my repo") == '"/srv/my repo"'
    assert service.systemd_quote("a$HOME%n") == "a$$HOME%%n"
    assert service.systemd_quote('say "hi"') == '"say \\"hi\\""'
    unit = service.render_unit("/opt/venv/bin/reconcile", ["--repo", "/srv/my repo", "--ref", "main"],
                               watchdog="5s", restart_sec="1s")
    assert 'ExecStart=/opt/venv/bin/reconcile agent --repo "/srv/my repo" --ref main\n' in unit
    assert "WatchdogSec=5s\n" in unit and "RestartSec=1s\n" in unit and "Type=notify\n" in unit


def test_install_refuses_options_the_agent_refuses_before_touching_anything(tmp_path, capsys):
    from controller import cli

    # a usage error, as every command has it: exit 1 with the message
    assert cli.main(["agent", "install", "--unit-dir", str(tmp_path), "--ref", "main"]) == 1  # no --repo
    assert "--repo" in capsys.readouterr().err
    assert service.main(["--unit-dir", str(tmp_path), "--repo", "/srv/r", "--watchdog", "2 min;x"]) == 1
    assert "--watchdog" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- which units a systemd lab node masks ------------------------------------------------------

def test_a_node_masks_what_the_host_starts_at_boot_except_the_ha_packages_units(tmp_path):
    system, info, lib = tmp_path / "etc/systemd/system", tmp_path / "var/lib/dpkg/info", tmp_path / "lib/systemd/system"
    for wants, unit in [("multi-user.target.wants", "haproxy.service"), ("multi-user.target.wants", "lxc-net.service"),
                        ("multi-user.target.wants", "smbd.service"), ("multi-user.target.wants", "remote-fs.target"),
                        ("getty.target.wants", "getty@tty1.service"), ("sssd.service.wants", "sssd-nss.socket"),
                        ("timers.target.wants", "apt-daily.timer"), ("multi-user.target.wants", "logd.service")]:
        (system / wants).mkdir(parents=True, exist_ok=True)
        (system / wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    # SysV scripts started in runlevel 3: one with a native unit (systemd ignores the script),
    # one without (the generator makes openipmi.service), one of an HA package, one stopped
    lib.mkdir(parents=True)
    (lib / "haproxy.service").write_text("[Service]\n")
    (tmp_path / "etc/rc3.d").mkdir()
    for link in ("S01haproxy", "S01openipmi", "S01keepalived", "K01ipmievd"):
        (tmp_path / "etc/rc3.d" / link).symlink_to(f"../init.d/{link[3:]}")
    info.mkdir(parents=True)
    (info / "haproxy.list").write_text("/lib/systemd/system/haproxy.service\n/usr/sbin/haproxy\n")
    (info / "keepalived.list").write_text("/etc/init.d/keepalived\n")
    (info / "sssd-common.list").write_text("/lib/systemd/system/sssd-nss.socket\n")
    (info / "cluster-glue:amd64.list").write_text("/lib/systemd/system/logd.service\n")
    assert systemd_node.masked_units(tmp_path) == ["apt-daily.timer", "lxc-net.service", "openipmi.service",
                                                   "smbd.service"]


def test_the_lab_name_decides_whose_lxc_cgroups_these_are():
    assert systemd_node._mine("t1-1", "lxc.payload.t1-1-lb2")
    assert systemd_node._mine("t1-1", "lxc.monitor.t1-1-lb12")
    assert not systemd_node._mine("t1-1", "lxc.payload.t1-12-lb1")
    assert not systemd_node._mine("t1", "lxc.payload.t1-1-lb1")
    assert not systemd_node._mine("t1-1", "lxc.payload.app1")


def test_the_packaged_md5_of_corosync_conf_is_read_from_a_recorded_dpkg_status():
    """dpkg's own record (the corosync package's stanza of /var/lib/dpkg/status on Debian 12)
    names the md5 of Debian's corosync.conf fixture: the file a fresh node starts with."""
    from reconcilers.pacemaker import daemons

    text = (FIXTURES / "pacemaker" / "corosync.conf.debian-default").read_bytes()
    status = FIXTURES / "pacemaker" / "dpkg-status-corosync"
    assert daemons.packaged_md5(Path("/etc/corosync/corosync.conf"), status) == hashlib.md5(text).hexdigest()
    assert daemons.packaged_md5(Path("/etc/corosync/other.conf"), status) is None


def test_a_daemon_status_says_when_its_unit_does_not_start_at_boot():
    """What keepalived, the Cluster's daemons and sssd show as drift under systemd: desired
    says plain `running` on every machine (pure), observe appends the unit's boot setting."""
    from reconcilers.base import boot_note, starts_at_boot, without_boot_note
    from reconcilers.keepalived.reconciler import _boot_only

    assert boot_note(None) == ""  # no systemd: started directly, nothing to enable
    assert boot_note(UnitState("keepalived.service", "loaded", "active", "enabled", "enabled")) == ""
    assert boot_note(UnitState("keepalived.service", "loaded", "active", "static", "")) == ""
    held = "running" + boot_note(UnitState("keepalived.service", "loaded", "active", "disabled", "enabled"))
    assert held == ("running (keepalived.service is disabled on this node (its package enables it): "
                    "not started at boot)")
    masked = "stopped" + boot_note(UnitState("keepalived.service", "masked", "inactive", "masked", "enabled"))
    assert masked == "stopped (keepalived.service is masked on this node: not started at boot)"
    plain = "running" + boot_note(UnitState("keepalived.service", "loaded", "active", "disabled", "disabled"))
    assert plain == "running (keepalived.service is disabled: not started at boot)"  # not a hold: enabled by apply
    assert not starts_at_boot(held) and starts_at_boot("running") and starts_at_boot(None)
    assert without_boot_note(held) == "running" and without_boot_note(masked) == "stopped"
    want = {"config": {"a": 1}, "keepalived": "running"}
    assert _boot_only({"config": {"a": 1}, "keepalived": held}, want)  # enable only: no reload
    assert not _boot_only({"config": {"a": 2}, "keepalived": held}, want)
    assert not _boot_only({"config": {"a": 1}, "keepalived": masked}, want)  # stopped: started too
