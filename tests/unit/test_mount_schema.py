"""Mount manifests through the loader: bad input is refused as `file:line: field: message`,
secrets are never echoed, and the embedded examples are valid."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.loader import TreeError, load_tree

GOOD = """\
apiVersion: reconcile/v1
kind: Mount
metadata:
  name: reports
spec:
  node: lb1
  path: {path}
  type: {type}
{block}
{extra}"""

SSHFS = """\
  sshfs:
    host: 192.0.2.12
    user: files
    path: reports
    identity: {file: /etc/reconcile/secrets/reports-sftp.key}"""

RCLONE = """\
  rclone:
    remote:
      type: sftp
      options: {host: 192.0.2.12, user: files}
      secrets: {pass: {file: /etc/reconcile/secrets/reports-sftp.password}}
    path: reports"""


def write(root: Path, path="/mnt/reports", type="sshfs", block=SSHFS, extra="", name="mount.yaml") -> Path:
    f = root / name
    f.write_text(GOOD.format(path=path, type=type, block=block, extra=extra))
    return f


def problems(root: Path) -> list[str]:
    with pytest.raises(TreeError) as err:
        load_tree(root)
    return [str(p) for p in err.value.problems]


def line_of(f: Path, marker: str) -> int:
    text = f.read_text()
    return text[:text.index(marker)].count("\n") + 1


def test_a_good_sshfs_and_rclone_mount_load(tmp_path):
    write(tmp_path)
    write(tmp_path, path="/mnt/r2", type="rclone", block=RCLONE, name="r.yaml")
    (tmp_path / "r.yaml").write_text((tmp_path / "r.yaml").read_text().replace("name: reports", "name: r2"))
    tree = load_tree(tmp_path)
    assert {m.metadata.name for m in tree.of_kind("Mount")} == {"reports", "r2"}


@pytest.mark.parametrize("path,says", [
    ("/", "system folder"), ("/etc", "system folder"), ("/usr", "system folder"), ("/var", "system folder"),
    ("mnt/reports", "absolute"), ("/etc/ssl/private", "inside /etc"), ("/proc/x", "inside /proc"),
    ("/mnt/../etc", "'..'"), ("/mnt/reports/", "trailing"), ("/mnt/re ports", "a path may use only"),
    ("/var/lib/reconcile/x", "inside /var/lib/reconcile"),
])
def test_a_mount_point_that_is_a_system_folder_or_relative_is_refused(tmp_path, path, says):
    f = write(tmp_path, path=f'"{path}"')
    out = problems(tmp_path)
    assert len(out) == 1 and out[0].startswith(f"{f.name}:{line_of(f, 'path:')}: spec.path: "), out
    assert says in out[0]


@pytest.mark.parametrize("option,says", [
    ("noatime,bind", "no comma"),
    ("ro\\n/dev/sda1 /etc ext4 rw", "no comma"),
    ("bind", "mount operation"),
    ("remount", "mount operation"),
    ("x-systemd.requires=/etc", "runs a command"),
    ("ProxyCommand=nc", "runs a command"),
    ("ssh_command=/bin/sh", "runs a command"),
    ("uid=0", "use owner"),
    ("ro", "readOnly"),
    ("IdentityFile=/root/.ssh/id_rsa", "sshfs.identity"),
    ("cache='yes'", "no comma"),
])
def test_an_option_that_would_smuggle_another_mount_or_a_command_is_refused(tmp_path, option, says):
    f = write(tmp_path, extra=f'  options: [noatime, "{option}"]')
    out = problems(tmp_path)
    assert len(out) == 1 and out[0].startswith(f"{f.name}:{line_of(f, 'options:')}: spec.options[1]: "), out
    assert says in out[0]


@pytest.mark.parametrize("where,text", [
    ("option", '  options: ["password=hunter2-very-secret"]'),
    ("cifs", ""),
    ("rclone option", ""),
    ("sshfs identity", ""),
])
def test_an_inline_password_is_refused_and_never_echoed(tmp_path, where, text, capsys):
    if where == "cifs":
        block = "  cifs: {server: files.example.test, share: reports, user: app, password: hunter2-very-secret}"
        f = write(tmp_path, type="cifs", block=block)
        field = "spec.cifs.password"
    elif where == "rclone option":
        f = write(tmp_path, type="rclone", block=RCLONE.replace("user: files}", "user: files, pass: hunter2-very-secret}"))
        field = "spec.rclone.remote.options.pass"
    elif where == "sshfs identity":
        f = write(tmp_path, block=SSHFS.replace("{file: /etc/reconcile/secrets/reports-sftp.key}", "hunter2-very-secret"))
        field = "spec.sshfs.identity"
    else:
        f = write(tmp_path, extra=text)
        field = "spec.options[0]"
    assert main(["validate", "--repo", str(tmp_path), "--no-native"]) == 1
    out, err = capsys.readouterr()
    assert f"{f.name}:" in err and f": {field}" in err, err
    assert "hunter2" not in out + err
    assert "by reference" in err or "never inline" in err


def test_rclone_options_that_run_a_command_are_refused(tmp_path):
    f = write(tmp_path, type="rclone", block=RCLONE.replace("user: files}", "user: files, md5sum_command: md5sum}"))
    out = problems(tmp_path)
    assert f"{f.name}:" in out[0] and "spec.rclone.remote.options.md5sum_command" in out[0] and "runs a command" in out[0]


@pytest.mark.parametrize("flag,says", [("config", "writes the config"), ("rc-addr", "remote control"),
                                       ("password-command", "runs a command"), ("allow-other", "allowOther")])
def test_rclone_flags_reconcile_owns_are_refused(tmp_path, flag, says):
    write(tmp_path, type="rclone", block=RCLONE + f"\n    flags: {{{flag}: x}}")
    out = problems(tmp_path)
    assert f"spec.rclone.flags.{flag}" in out[0] and says in out[0]


def test_two_mounts_on_one_mount_point_of_a_node_conflict(tmp_path):
    write(tmp_path)
    f = write(tmp_path, name="b.yaml", type="tmpfs", block="")
    f.write_text(f.read_text().replace("name: reports", "name: other"))
    out = problems(tmp_path)
    assert len(out) == 1 and "conflicts with Mount" in out[0] and "spec.path" in out[0] and "/mnt/reports" in out[0]


def test_a_mount_point_inside_another_mount_is_refused(tmp_path):
    write(tmp_path)
    f = write(tmp_path, name="b.yaml", type="tmpfs", block="", path="/mnt/reports/cache")
    f.write_text(f.read_text().replace("name: reports", "name: cache"))
    out = problems(tmp_path)
    assert len(out) == 1 and "nested" in out[0] and f"{f.name}:" in out[0]


@pytest.mark.parametrize("extra,field,says", [
    ('  mode: "755"', "spec.mode", "four octal digits"),
    ('  mode: "1777"', "spec.mode", "tmpfs root only"),
    ("  allowOther: true\n  bind: {source: /srv/data}", "spec.allowOther", "only FUSE"),
    ("  owner: www-data\n  bind: {source: /srv/data}", "spec.owner", "source folder"),
    ("  bind: {source: /mnt}", "spec.bind.source", "loops"),
    ("  state: absent\n  automount: {idleTimeout: 5m}\n  bind: {source: /srv/data}", "spec.automount", "absent"),
])
def test_typed_fields_that_do_not_fit_the_type_are_refused(tmp_path, extra, field, says):
    kind = "bind" if "bind:" in extra else "sshfs"
    write(tmp_path, type=kind, block="" if kind == "bind" else SSHFS, extra=extra)
    out = problems(tmp_path)
    assert any(f": {field}: " in p and says in p for p in out), out


def test_a_type_needs_its_own_block_and_no_other(tmp_path):
    write(tmp_path, type="nfs")
    out = problems(tmp_path)
    assert "type nfs takes no sshfs block" in out[0]


def test_the_embedded_mount_examples_are_valid():
    from controller.cli import DEFAULT_REPO

    mounts = {m.metadata.name: m.spec for m in load_tree(DEFAULT_REPO).of_kind("Mount")}
    assert set(mounts) == {"reports", "reports-sshfs", "gdrive-reports"}
    assert mounts["gdrive-reports"].state == "absent"  # Google Drive needs the network
    assert mounts["gdrive-reports"].rclone.remote.secrets["token"].file
