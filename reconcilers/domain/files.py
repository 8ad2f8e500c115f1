"""A DomainJoin's files as one artifact set: sssd.conf, the sudo rules, krb5.conf, the PAM
line and nsswitch.conf. Rendered once (by `desired`), checked natively once (`visudo -c`,
`sssctl config-check`, MIT Kerberos' profile parser; an accepted rendering is remembered by
`native_check`), installed once (each file atomically, only after all of them passed), and
sssd restarted at most once per pass (by the reconciler).

A file reconcile did not write is never overwritten: sssd.conf and the sudoers file refuse,
and a krb5.conf found there is kept aside (in the state folder) and put back on leave.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reconcilers.base import GENERATED_HEADER, ApplyError, AtomicWriter, Node, native_check, validated_temp
from reconcilers.domain import krb5, nsswitch, pam, sssd, sudoers
from reconcilers.domain.adcli import default_computer_name


@dataclass(frozen=True)
class Paths:
    """Where the node keeps what this kind manages (tests point these at a temp folder)."""

    keytab: Path = Path("/etc/krb5.keytab")
    sssd_conf: Path = Path("/etc/sssd/sssd.conf")
    sssd_snippets: Path = Path("/etc/sssd/conf.d")
    sssd_pid: Path = Path("/run/sssd.pid")
    sssd_db: Path = Path("/var/lib/sss/db")
    sssd_mc: Path = Path("/var/lib/sss/mc")  # the memory cache libnss_sss reads even with sssd stopped
    nsswitch: Path = Path("/etc/nsswitch.conf")
    pam_session: Path = pam.SESSION
    sudoers_dir: Path = Path("/etc/sudoers.d")
    krb5_conf: Path = krb5.PATH
    sssd_wants: Path = Path("/etc/systemd/system/sssd.service.wants")  # responder sockets enabled with sssd

    def sudoers(self, name: str) -> Path:
        # sudo skips files in sudoers.d whose name has a '.' or ends in '~': a DNS label has neither.
        return self.sudoers_dir / f"reconcile-{name}"


@dataclass
class Artifacts:
    """Everything apply needs for one DomainJoin, computed once by `desired`: the rendered
    files (passwords as `<secret: …>` tokens) and the normalized state."""

    name: str
    spec: Any
    computer: str
    sssd_conf: str
    sudoers: str | None
    krb5_conf: str | None
    state: dict[str, Any] = field(default_factory=dict)


def render(name: str, spec: Any, node_name: str) -> Artifacts:
    computer = (spec.computerName or default_computer_name(node_name)).upper()
    conf = sssd.render_sssd_conf(name, spec, computer)
    rules = sudoers.rule_lines(spec)
    sudo = sudoers.render_sudoers(name, rules)
    kconf = krb5.render_krb5_conf(name, spec.domain, spec.kerberos_realm(), spec.krb5) if spec.krb5 else None
    home = spec.homeDirectories
    mkhomedir: dict[str, Any] = {"create": home.create}
    if home.create:
        mkhomedir.update(skel=home.skel, umask=home.umask)
    files = {"sssd.conf": "0600"}
    if sudo is not None:
        files["sudoers"] = "0440"
    if kconf is not None:
        files["krb5.conf"] = "0644"
    state = {
        "membership": {"domain": spec.domain, "computerName": computer, "ou": spec.ou} if spec.joins() else None,
        "sssdConf": sssd.desired_normalized(conf, spec),
        "sudo": rules,
        "krb5Conf": krb5.parse_krb5_conf(kconf) if kconf else None,
        "mkhomedir": mkhomedir,
        "nsswitch": ", ".join(sorted(nsswitch.NSS_DATABASES)),
        "sssd": "running",
        "files": files,
    }
    return Artifacts(name, spec, computer, conf, sudo, kconf, state)


# --- native checks, once --------------------------------------------------------------------


def check(node: Node, a: Artifacts, paths: Paths, sssd_conf: str | None = None) -> list[str]:
    """Every native validator on the rendered files (temp files only), each skipped when this
    node accepted exactly that content before. `sssd_conf`: the final file (with secrets),
    which is checked but never remembered."""
    problems: list[str] = []

    def run(tool: str, content: str, checker: Callable[[Path], None], suffix: str, cache: bool = True) -> None:
        def attempt() -> list[str]:
            try:
                validated_temp(content, checker, suffix=suffix)
            except ApplyError as err:
                return [str(err)]
            return []

        problems.extend(native_check(node, tool, content, attempt) if cache else attempt())

    def sssctl(path: Path) -> None:
        os.chmod(path, 0o600)  # sssctl refuses a config others may read
        sssd.check_sssd_conf(node, path, paths.sssd_snippets)

    run("sssctl", sssd_conf or a.sssd_conf, sssctl, ".conf", cache=sssd_conf is None)
    if a.sudoers is not None:
        run("visudo", a.sudoers, lambda path: sudoers.check_sudoers(node, path), "")
    if a.krb5_conf is not None:
        run("klist", a.krb5_conf, lambda path: krb5.check_krb5_conf(node, path), ".conf")
    return problems


# --- installing, once ---------------------------------------------------------------------------


def refuse_foreign(a: Artifacts, paths: Paths) -> None:
    """Never overwrite an sssd.conf or sudoers file that reconcile did not write."""
    for path in (paths.sssd_conf, paths.sudoers(a.name)):
        text = read(path)
        if text is not None and GENERATED_HEADER not in text:
            raise ApplyError(f"{path} exists and was not written by reconcile; move it away "
                             f"(or import it: reconcile import domain) before DomainJoin/{a.name} manages it")


def install(node: Node, a: Artifacts, paths: Paths, sssd_conf: str, saved_krb5: Path) -> dict[str, bool]:
    """Write every file of the set (already checked); → which of them changed."""
    writer = AtomicWriter(node)
    changed = {"sssd.conf": writer.write(paths.sssd_conf, sssd_conf, mode=0o600, owner=(0, 0))}
    if a.krb5_conf is not None:
        current = read(paths.krb5_conf)
        if current is not None and GENERATED_HEADER not in current and not saved_krb5.exists():
            writer.write(saved_krb5, current, mode=0o644)  # put back on leave
        changed["krb5.conf"] = writer.write(paths.krb5_conf, a.krb5_conf, mode=0o644, owner=(0, 0))
    else:
        changed["krb5.conf"] = release_krb5(writer, paths, saved_krb5)
    if a.sudoers is None:
        writer.remove(paths.sudoers(a.name))
    else:
        writer.write(paths.sudoers(a.name), a.sudoers, mode=0o440, owner=(0, 0))
    text = read(paths.pam_session) or ""
    home = a.spec.homeDirectories
    new = pam.pam_with_block(text, a.name, home.skel, home.umask) if home.create else pam.pam_without_block(text, a.name)
    if new != text:
        writer.write(paths.pam_session, new)
    return changed


def add_sss(node: Node, paths: Paths) -> list[str]:
    text = read(paths.nsswitch) or ""
    new, added = nsswitch.nsswitch_add_sss(text, nsswitch.NSS_DATABASES)
    if added:
        AtomicWriter(node).write(paths.nsswitch, new)
    return added


def release_krb5(writer: AtomicWriter, paths: Paths, saved: Path) -> bool:
    """Stop managing krb5.conf: put back the one found before reconcile wrote its own, or
    remove ours when there was none. A krb5.conf reconcile did not write stays. → changed."""
    current = read(paths.krb5_conf)
    ours = current is not None and GENERATED_HEADER in current
    before = read(saved)
    if before is not None:
        if ours or current is None:
            writer.write(paths.krb5_conf, before, mode=0o644)
        writer.remove(saved)
        return True
    return writer.remove(paths.krb5_conf) if ours else False


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def mode_of(path: Path) -> str:
    return f"{path.stat().st_mode & 0o7777:04o}"
