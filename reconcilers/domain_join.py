"""DomainJoin: Active Directory membership, sssd, home directories and sudo rules.

What one DomainJoin object is on a node:

- membership: the computer account in AD and its keys in /etc/krb5.keytab, made by
  `adcli join` (the join password goes on stdin, never in argv). Sync is local: the
  keytab holds the desired principal. Whether AD still accepts it (`adcli testjoin`) and
  whether users and groups resolve through sssd is health, not sync (it costs a round
  trip to a DC): a membership AD revoked is Degraded, and is joined again once the
  keytab's entry is gone (move /etc/krb5.keytab away and apply);
- /etc/sssd/sssd.conf (0600, generated whole): the AD provider, the access rule
  (`simple_allow_groups`, or AD's own for accessProvider ad), `use_fully_qualified_names`,
  `fallback_homedir`, the keytab;
- nsswitch.conf: `sss` on the passwd, group and shadow lines (only those lines are edited,
  and on removal only the `sss` this reconciler added is taken away);
- a marked `pam_mkhomedir` line (with skel and umask) after pam-auth-update's block in
  /etc/pam.d/common-session. Debian's mkhomedir profile takes no arguments, and a profile
  of our own would live in /usr/share, which is not configuration; pam-auth-update keeps
  lines outside its block;
- /etc/sudoers.d/reconcile-<name> (0440) for the sudo groups, checked by `visudo -cf` on
  the temp file before it is installed;
- sssd itself, running and started after its configuration was last written.

A record of the join (domain, computer name, OU, the account and secret *reference* used,
what was added to nsswitch.conf, whether the keytab existed before) is kept in the agent's
state folder: removing the manifest leaves the domain (`adcli delete-computer`, with the
same account) and removes exactly what was written, also after the manifest is gone.

Changing groups, names or home settings rewrites the files and restarts sssd; only a
change of domain, computer name or OU (or a membership AD no longer accepts) joins again.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from reconcilers import keytab
from reconcilers.base import (
    GENERATED_HEADER, ApplyError, AtomicWriter, Change, CommandError, Desired, Health, HealthReport, Node, PerObject,
    UnsafeValue, enable_unit, one_line, pid_alive, read_secret, systemd_running, unit_field, unit_notes, unit_states,
    validated_temp,
)

NSS_DATABASES = ("passwd", "group", "shadow")
# adcli testjoin's reasons that mean "AD does not accept this membership" (the account is
# gone, its password was reset, it was disabled). Anything else (no DC answers, no KDC)
# says nothing about the membership.
_NOT_JOINED = ("not found in Kerberos database", "Preauthentication failed", "credentials have been revoked")


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
    pam_session: Path = Path("/etc/pam.d/common-session")
    sudoers_dir: Path = Path("/etc/sudoers.d")
    sssd_wants: Path = Path("/etc/systemd/system/sssd.service.wants")  # its enabled responder sockets

    def sudoers(self, name: str) -> Path:
        # sudo skips files in sudoers.d whose name has a '.' or ends in '~': a DNS label has neither.
        return self.sudoers_dir / f"reconcile-{name}"


# --- parsing what the real tools say ---------------------------------------------------------


def parse_keytab_list(text: str, prefer: tuple[str, str] | None = None) -> tuple[str, str] | None:
    """(domain, computer name) of the machine account in `klist -k` output, or None.

    The machine principal is the one ending in `$`: `LB1$@CORP.EXAMPLE.TEST`. With several
    (keys of an old name left by an earlier version of reconcile), the one `prefer` names
    if the keytab has it, else the first.
    """
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            principal = parts[1]
            m = re.fullmatch(r"([A-Za-z0-9-]{1,15})\$@([A-Za-z0-9.-]+)", principal)
            if m:
                found.append((m.group(2).lower(), m.group(1).upper()))
    if prefer is not None and prefer in found:
        return prefer
    return found[0] if found else None


def membership_accepted(rc: int, stderr: str) -> bool:
    """Whether `adcli testjoin` says the membership is good (True) or gone (False).

    Any other failure (no domain controller answers, DNS) says nothing about the membership:
    raise rather than let a network problem look like "not joined" and trigger a rejoin.
    """
    if rc == 0:
        return True
    if "Couldn't authenticate as machine account" in stderr and any(r in stderr for r in _NOT_JOINED):
        return False
    detail = " ".join(stderr.strip().splitlines()[-1:]) or f"exit {rc}"
    raise ApplyError(f"cannot check the domain membership (adcli testjoin): {detail}")


def parse_sssd_conf(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    return parser


def split_list(value: str) -> list[str]:
    """An sssd list option: comma-separated, blanks around items ignored."""
    return [item.strip() for item in value.split(",") if item.strip()]


def sudoers_escape(name: str) -> str:
    """A sudoers word: every character that is not plainly a name character is escaped.

    sudoers(5) needs a backslash before space and , : = ( ) ! \\; escaping the rest of the
    few characters a GroupName may hold (' .) is harmless. `%"web users"` is *not* the
    quoted form sudo reads (visudo: "empty group"), the backslash form is. Refused
    (UnsafeValue): an empty name, and anything that is not one line (a backslash before a
    newline continues the rule on the next line).
    """
    one_line(name, "sudoers", max_length=256)
    if not name:
        raise UnsafeValue("sudoers: refused an empty group name")
    return "".join(c if c.isalnum() or c in "_-." else "\\" + c for c in name)


def sudoers_unescape(word: str) -> str:
    return re.sub(r"\\(.)", r"\1", word)


def parse_sudoers_groups(text: str) -> list[str]:
    """The groups of the `%group ALL=(ALL:ALL) ALL` rules in a sudoers file we wrote."""
    groups = []
    for line in text.splitlines():
        m = re.match(r"^%((?:\\.|[^\s\\])+)\s+ALL\s*=\s*\(ALL:ALL\)\s+ALL\s*$", line)
        if m:
            groups.append(sudoers_unescape(m.group(1)))
    return groups


def nsswitch_sources(text: str) -> dict[str, list[str]]:
    """Database → its sources (action items such as [NOTFOUND=return] left out)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([a-z_]+)\s*:(.*)$", line.split("#", 1)[0])
        if m:
            out[m.group(1)] = [w for w in m.group(2).split() if not w.startswith("[")]
    return out


def nsswitch_add_sss(text: str, databases: tuple[str, ...] | list[str]) -> tuple[str, list[str]]:
    """Append `sss` to the given databases' lines (adding a line if one is missing).

    Returns the new text and the databases that gained it; other lines stay as they are.
    """
    added: list[str] = []
    lines = text.splitlines()
    for db in databases:
        for i, line in enumerate(lines):
            m = re.match(rf"^(\s*{db}\s*:)([^#]*)(#.*)?$", line)
            if m:
                if "sss" not in m.group(2).split():
                    lines[i] = f"{m.group(1)}{m.group(2).rstrip()} sss" + (f" {m.group(3)}" if m.group(3) else "")
                    added.append(db)
                break
        else:
            lines.append(f"{db + ':':<16}files sss")
            added.append(db)
    return "\n".join(lines) + "\n", added


def nsswitch_remove_sss(text: str, databases: list[str]) -> str:
    lines = text.splitlines()
    for db in databases:
        for i, line in enumerate(lines):
            m = re.match(rf"^(\s*{db}\s*:)([^#]*)(#.*)?$", line)
            if m:
                words = [w for w in m.group(2).split() if w != "sss"]
                lines[i] = f"{m.group(1)}{' ' * max(1, 16 - len(m.group(1)))}{' '.join(words)}".rstrip() + \
                    (f" {m.group(3)}" if m.group(3) else "")
                break
    return "\n".join(lines) + "\n"


def pam_argument(key: str, value: str) -> str:
    """`key=value`, one module argument of a PAM line, as it is; refused (UnsafeValue) when
    libpam would read it otherwise: a blank splits arguments, '[' ']' group them, '#'
    starts a comment anywhere on the line, and a backslash at the end continues the line."""
    text = one_line(f"{key}={value}", "a PAM line", max_length=512)
    if not value or any(c.isspace() or c in "[]#\\" for c in text):
        raise UnsafeValue(f"PAM line: refused argument {text!r}: it may not be empty or hold blanks, [ ], # or \\")
    return text


def _pam_markers(name: str) -> tuple[str, str]:
    return f"# >>> reconcile DomainJoin/{name}", f"# <<< reconcile DomainJoin/{name}"


def parse_pam_block(text: str, name: str) -> dict[str, str] | None:
    """The pam_mkhomedir arguments of our marked block in common-session, or None."""
    begin, end = _pam_markers(name)
    inside = False
    for line in text.splitlines():
        if line.startswith(begin):
            inside = True
        elif line.startswith(end):
            inside = False
        elif inside:
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "session" and parts[2] == "pam_mkhomedir.so":
                return dict(arg.split("=", 1) for arg in parts[3:] if "=" in arg)
    return None


def pam_without_block(text: str, name: str) -> str:
    begin, end = _pam_markers(name)
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith(begin):
            inside = True
        elif inside and line.startswith(end):
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + "\n" if out else ""


def pam_with_block(text: str, name: str, skel: str, umask: str) -> str:
    """common-session with our block at the end: after pam-auth-update's block, which
    pam-auth-update rewrites while keeping lines outside it."""
    begin, end = _pam_markers(name)
    block = [
        f"{begin}: create the home directory of a domain user at first login",
        f"# {GENERATED_HEADER}",
        f"session\toptional\t\t\tpam_mkhomedir.so {pam_argument('skel', skel)} {pam_argument('umask', umask)}",
        end,
    ]
    return pam_without_block(text, name) + "\n".join(block) + "\n"


def show_list(items: Any) -> str:
    """Group lists are compared as one "a, b" string: the plan then reads
    `sudoGroups: domain admins → domain admins, web users` rather than as list moves.
    (A group name never holds a comma.)"""
    return ", ".join(items)


def digest(data: bytes, mode: int) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()[:16]} mode {mode:04o}"


# --- health --------------------------------------------------------------------------------


def resolvable_names(spec: Any) -> tuple[list[str], list[str]]:
    """(users, groups) that must resolve on a joined node, as sssd names them: the join
    user and the groups the manifest allows or gives sudo (lower-case; `@domain` when
    names are fully qualified)."""
    suffix = f"@{spec.domain}" if spec.fullyQualifiedNames else ""
    users = [spec.user.lower() + suffix]
    groups = list(dict.fromkeys(g.lower() + suffix for g in [*spec.allowGroups, *spec.sudoGroups]))
    return users, groups


def parse_getent(text: str) -> set[str]:
    """The names `getent passwd|group NAME...` printed (the first field of each line)."""
    return {line.split(":", 1)[0].lower() for line in text.splitlines() if ":" in line}


def unresolved(node: Node, database: str, names: list[str]) -> list[str]:
    """The names NSS does not resolve (one getent for all; rc 2 = some were not found)."""
    if not names:
        return []
    r = node.run(["getent", database, *names], read_only=True, check=False)
    found = parse_getent(r.stdout)
    kind = "user" if database == "passwd" else "group"
    return [f"{kind} {n!r}" for n in names if n not in found]


def join_health(accepted: bool | None, why: str, computer: str, domain: str, missing: list[str], asked: int) -> Health:
    """`accepted`: testjoin's verdict (None: no DC could be asked, `why`)."""
    if accepted is False:
        return Health.degraded("JoinRejected", f"AD does not accept {computer}$ any more (deleted, reset or "
                                               f"disabled in {domain}); move /etc/krb5.keytab away and apply to "
                                               "join again")
    if missing:
        return Health.degraded("NamesNotResolving", f"{', '.join(missing)} do{'es' if len(missing) == 1 else ''} "
                                                    "not resolve through sssd")
    if accepted is None:
        return Health.unknown("DomainUnreachable", why)
    return Health.healthy("JoinValid", f"AD accepts {computer}$; {asked} user and group name"
                                       f"{'s' if asked != 1 else ''} resolve")


# --- rendering -------------------------------------------------------------------------------


@dataclass
class Wanted:
    """Everything apply needs for one object, computed once by `desired`."""

    name: str
    spec: Any
    computer: str
    sssd_conf: str
    sudoers: str | None
    state: dict[str, Any] = field(default_factory=dict)


def default_computer_name(node: str) -> str:
    """What `adcli join` uses without --computer-name on that node: its short name (the
    node is the machine: its host name), upper-case, cut to the 15 characters of a NetBIOS
    name. From the node's name, not a host lookup: desired() is pure."""
    return node.split(".")[0].upper()[:15]


def sssd_value(value: Any) -> str:
    """The value of a `key = value` line of sssd.conf, as it is; refused (UnsafeValue) when
    sssd's INI parser would read it otherwise: a control character or line separator (a
    newline would start another key or a `[section]`), or blanks at either end (dropped;
    a line that starts with a blank continues the previous value)."""
    text = one_line(str(value), "sssd.conf")
    if text != text.strip():
        raise UnsafeValue(f"sssd.conf: refused to write {text!r}: a value there may not start or end with a blank")
    return text


def sssd_list(items: Iterable[str]) -> str:
    """An sssd list option (`a, b`): no item may be empty or hold the ',' that separates them."""
    words = [sssd_value(item) for item in items]
    if any(not w or "," in w for w in words):
        raise UnsafeValue(f"sssd.conf: refused list items {words!r}: an item may not be empty or hold ','")
    return ", ".join(words)


def sssd_section(name: str) -> str:
    """A `[section]` header of sssd.conf: its name may not hold the brackets around it."""
    text = sssd_value(name)
    if not text or "[" in text or "]" in text:
        raise UnsafeValue(f"sssd.conf: refused section name {text!r}")
    return f"[{text}]"


def responders_socket_activated(paths: Paths) -> bool:
    """Whether systemd starts sssd's nss and pam responders on demand from their sockets
    (Debian enables sssd-nss.socket and sssd-pam.socket with sssd): then sssd.conf must
    not list them in `services`, or those sockets refuse to start (and the node is
    `degraded`). Without systemd, sssd starts the responders `services` lists."""
    return systemd_running() and all((paths.sssd_wants / f"sssd-{r}.socket").exists() for r in ("nss", "pam"))


def render_sssd_conf(name: str, spec: Any, computer: str, socket_activated: bool = False) -> str:
    v = sssd_value
    domain = spec.domain
    lines = [
        f"# {GENERATED_HEADER}",
        f"# DomainJoin/{v(name)}: Active Directory domain {v(domain)}, computer account {v(computer)}$",
        "",
        "[sssd]",
        "config_file_version = 2",
        "# nss and pam responders: started by systemd from sssd-nss.socket and sssd-pam.socket"
        if socket_activated else "services = nss, pam",
        f"domains = {sssd_list([domain])}",
        "",
        sssd_section(f"domain/{domain}"),
        "id_provider = ad",
        "auth_provider = ad",
        "chpass_provider = ad",
        f"access_provider = {v(spec.accessProvider)}",
    ]
    if spec.accessProvider == "simple" and spec.allowGroups:
        lines.append(f"simple_allow_groups = {sssd_list(g.lower() for g in spec.allowGroups)}")
    lines += [
        f"ad_domain = {v(domain)}",
        f"krb5_realm = {v(domain.upper())}",
        "krb5_keytab = /etc/krb5.keytab",
        # sssd looks for <HOSTNAME>$ in the keytab unless told: a computerName differing
        # from the host name would otherwise leave sssd without credentials.
        f"ldap_sasl_authid = {v(computer + '$')}",
        "ldap_id_mapping = true",
        "cache_credentials = true",
        "krb5_store_password_if_offline = true",
        f"use_fully_qualified_names = {'true' if spec.fullyQualifiedNames else 'false'}",
        f"fallback_homedir = {v(spec.homeDirectories.pattern)}",
        "default_shell = /bin/bash",
    ]
    return "\n".join(lines) + "\n"


def sudo_group_names(spec: Any) -> list[str]:
    """The group names as sssd reports them: lower-case (AD is case-insensitive and sssd's
    AD provider folds case), `@domain` appended when names are fully qualified."""
    out: list[str] = []
    for group in spec.sudoGroups:
        name = group.lower() + (f"@{spec.domain}" if spec.fullyQualifiedNames else "")
        if name not in out:
            out.append(name)
    return out


def render_sudoers(name: str, groups: list[str]) -> str | None:
    if not groups:
        return None
    lines = [f"# {GENERATED_HEADER}", f"# DomainJoin/{name}: members of these domain groups may run any command"]
    lines += [f"%{sudoers_escape(g)} ALL=(ALL:ALL) ALL" for g in groups]
    return "\n".join(lines) + "\n"


def desired_state(name: str, spec: Any, computer: str, sssd_conf: str, sudoers: str | None) -> dict[str, Any]:
    home = spec.homeDirectories
    homes: dict[str, Any] = {"pattern": home.pattern, "create": home.create}
    if home.create:
        homes.update(skel=home.skel, umask=home.umask)
    files = {"sssd.conf": digest(sssd_conf.encode(), 0o600)}
    if sudoers is not None:
        files["sudoers"] = digest(sudoers.encode(), 0o440)
    return {
        "membership": {"domain": spec.domain, "computerName": computer, "ou": spec.ou},
        "access": {"provider": spec.accessProvider,
                   "allowGroups": show_list(g.lower() for g in spec.allowGroups) if spec.accessProvider == "simple" else ""},
        "fullyQualifiedNames": spec.fullyQualifiedNames,
        "homeDirectories": homes,
        "sudoGroups": show_list(sudo_group_names(spec)),
        "nsswitch": show_list(sorted(NSS_DATABASES)),
        "sssd": "running",
        "files": files,
    }


def join_argv(spec: Any, computer: str, keytab_path: Path) -> list[str]:
    """`adcli join` for a spec: every value in an `--option=value` argument of its own (the
    password goes on stdin)."""
    argv = ["adcli", "join", f"--domain={spec.domain}", f"--login-user={spec.user}", "--stdin-password",
            f"--computer-name={computer}", f"--host-keytab={keytab_path}"]
    if spec.ou:
        argv.append(f"--domain-ou={spec.ou}")
    return argv


# --- native validators ---------------------------------------------------------------------


def check_sudoers(node: Node, path: Path) -> None:
    """`visudo -cf`: a file visudo refuses is never installed."""
    r = node.run(["visudo", "-c", "-f", str(path)], read_only=True, check=False)
    if r.rc != 0:
        detail = " | ".join((r.stderr or r.stdout).strip().splitlines()[:3])
        raise ApplyError(f"visudo refuses the sudoers rules: {detail}")


def check_sssd_conf(node: Node, path: Path, snippets: Path) -> None:
    """`sssctl config-check` on a candidate sssd.conf (it must be root-owned and 0600)."""
    with tempfile.TemporaryDirectory(prefix="reconcile-sssd-") as empty:
        snippet_dir = snippets if snippets.is_dir() else Path(empty)
        r = node.run(["sssctl", "config-check", "-c", str(path), "-s", str(snippet_dir)], read_only=True, check=False)
    if r.rc != 0:
        detail = " | ".join(line for line in (r.stdout + r.stderr).strip().splitlines()
                            if line.strip() and not line.startswith("[sssd]"))
        raise ApplyError(f"sssctl config-check refuses the sssd.conf: {detail}")


def install_sudoers(node: Node, path: Path, content: str) -> bool:
    """Install a sudoers file 0440 root, only after `visudo -cf` accepted the temp file."""
    return AtomicWriter(node).write(path, content, mode=0o440, owner=(0, 0),
                                    validate=lambda tmp: check_sudoers(node, tmp))


# --- the reconciler ----------------------------------------------------------------------------


class DomainJoinReconciler(PerObject):
    """Joins the node to an AD domain and keeps sssd, nsswitch, PAM and sudo in line with git."""

    kind = "DomainJoin"

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths()
        self.wanted: dict[str, Wanted] = {}
        self.enforce = False  # metadata.drift: enforce: unmask/enable sssd.service when held

    # --- desired -----------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        out: dict[str, Desired] = {}
        for m in tree.on_node("DomainJoin", node.name):
            name, spec = m.metadata.name, m.spec
            computer = (spec.computerName or default_computer_name(node.name)).upper()
            sssd_conf = render_sssd_conf(name, spec, computer, responders_socket_activated(self.paths))
            sudoers = render_sudoers(name, sudo_group_names(spec))
            state = desired_state(name, spec, computer, sssd_conf, sudoers)
            if systemd_running():  # sssd starts at boot, as the package installs it
                state["units"] = {"sssd": "enabled"}
            self.enforce = self.enforce or m.metadata.drift == "enforce"
            self.wanted[name] = Wanted(name, spec, computer, sssd_conf, sudoers, state)
            out[name] = Desired(state)
        return {self.kind: out}

    # --- observe -----------------------------------------------------------------------------

    def _marker_dir(self, node: Node) -> Path:
        return Path(node.state_dir) / "domain-join"

    def read_markers(self, node: Node) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted(self._marker_dir(node).glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("name") == path.stem:
                out[path.stem] = data
        return out

    def observe_membership(self, node: Node, prefer: tuple[str, str] | None = None,
                           check: bool = False) -> dict[str, Any] | None:
        """Domain and computer name from the keytab; `prefer`: the (domain, computer) our
        record says, when the keytab holds several. With `check`, also whether AD still
        accepts it (`valid`: one `adcli testjoin`, a round trip to a DC: apply and health
        ask, observe does not)."""
        if not self.paths.keytab.exists():
            return None
        r = node.run(["klist", "-k", str(self.paths.keytab)], read_only=True, check=False)
        found = parse_keytab_list(r.stdout, prefer) if r.rc == 0 else None
        if found is None:
            return None
        domain, computer = found
        membership: dict[str, Any] = {"domain": domain, "computerName": computer}
        if check:
            membership["valid"] = self.accepted(node, domain)
        return membership

    def accepted(self, node: Node, domain: str, timeout: float = 30) -> bool:
        """`adcli testjoin`: True accepted, False refused by AD; ApplyError when no DC
        could be asked (that says nothing about the membership)."""
        t = node.run(["adcli", "testjoin", f"--domain={domain}", f"--host-keytab={self.paths.keytab}"],
                     read_only=True, check=False, timeout=timeout)
        return membership_accepted(t.rc, t.stderr)

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        markers = self.read_markers(node)
        recorded = [(m.get("domain"), m.get("computerName")) for m in markers.values()]
        membership = self.observe_membership(node, recorded[0] if len(recorded) == 1 else None)
        names = set(markers)
        if membership and not names:
            # Joined without a record (by hand, or the record was lost): it belongs to the
            # manifest for that domain, if any. Without one it is not ours to touch.
            names |= {n for n, w in self.wanted.items() if w.spec.domain == membership["domain"]}
        return {self.kind: {name: self._observe_one(node, name, markers.get(name), membership) for name in sorted(names)}}

    def _observe_one(self, node: Node, name: str, marker: dict[str, Any] | None,
                     membership: dict[str, Any] | None) -> dict[str, Any]:
        p = self.paths
        member = {"domain": None, "computerName": None, "ou": None}
        if membership:
            member.update(membership)
            if marker and (marker.get("domain"), marker.get("computerName")) == \
                    (membership["domain"], membership["computerName"]):
                member["ou"] = marker.get("ou")  # where we created it; AD moves are not drift
        state: dict[str, Any] = {"membership": member}
        files: dict[str, str] = {}

        conf_text = _read(p.sssd_conf)
        access: dict[str, Any] = {"provider": None, "allowGroups": ""}
        homes: dict[str, Any] = {"pattern": None, "create": False}
        fq = None
        if conf_text is not None:
            files["sssd.conf"] = digest(conf_text.encode(), p.sssd_conf.stat().st_mode & 0o7777)
            try:
                conf = parse_sssd_conf(conf_text)
            except configparser.Error:
                conf = None
            domain = member["domain"] or (marker or {}).get("domain")
            if conf is not None and domain is None and conf.has_section("sssd"):
                domain = next(iter(split_list(conf["sssd"].get("domains", ""))), None)
            section = f"domain/{domain}"
            if conf is not None and conf.has_section(section):
                sec = conf[section]
                access["provider"] = sec.get("access_provider")
                access["allowGroups"] = show_list(split_list(sec.get("simple_allow_groups", "")))
                fq = sec.get("use_fully_qualified_names", "false").strip().lower() == "true"
                homes["pattern"] = sec.get("fallback_homedir")
        pam = parse_pam_block(_read(p.pam_session) or "", name)
        if pam is not None:
            homes.update(create=True, skel=pam.get("skel"), umask=pam.get("umask"))
        sudoers_path = p.sudoers(name)
        sudoers_text = _read(sudoers_path)
        sudo_groups = ""
        if sudoers_text is not None:
            files["sudoers"] = digest(sudoers_text.encode(), sudoers_path.stat().st_mode & 0o7777)
            sudo_groups = show_list(parse_sudoers_groups(sudoers_text))
        sources = nsswitch_sources(_read(p.nsswitch) or "")
        state.update(
            access=access,
            fullyQualifiedNames=fq,
            homeDirectories=homes,
            sudoGroups=sudo_groups,
            nsswitch=show_list(sorted(db for db in NSS_DATABASES if "sss" in sources.get(db, []))),
            sssd=self.sssd_status(),
            files=files,
        )
        if systemd_running():
            state["units"] = unit_field(unit_states(node, ["sssd.service"]))
        return state

    def sssd_status(self) -> str:
        """running | stopped | stale: started before its configuration was last written."""
        pid = pid_alive(self.paths.sssd_pid)
        if pid is None:
            return "stopped"
        started = process_start_time(pid)
        try:
            written = self.paths.sssd_conf.stat().st_mtime
        except FileNotFoundError:
            return "running"
        # boot time is whole seconds: allow one second before calling it stale
        if started is not None and written > started + 1.0:
            return "stale (sssd.conf changed after sssd started)"
        return "running"

    # --- watch -------------------------------------------------------------------------------

    def watch(self, node: Node, stop: Any = None) -> Iterator[str]:
        """Yield when a file this kind manages changes (inotify through watchfiles) or sssd
        stops (checked every few seconds). Our own writes fire too: the engine's re-plan
        then finds nothing to do."""
        import watchfiles

        p = self.paths
        files = {str(f) for f in (p.keytab, p.nsswitch, p.sssd_conf, p.pam_session)}
        dirs = sorted(d for d in {str(Path(f).parent) for f in files} | {str(p.sudoers_dir)} if Path(d).is_dir())

        def ours(path: str) -> bool:
            q = Path(path)
            return path in files or (q.parent == p.sudoers_dir and q.name.startswith("reconcile-"))

        was_running = pid_alive(p.sssd_pid) is not None
        for changes in watchfiles.watch(*dirs, watch_filter=lambda _c, path: ours(path), recursive=False,
                                        debounce=200, rust_timeout=3000, yield_on_timeout=True, stop_event=stop):
            if changes:
                yield "changed: " + ", ".join(sorted({path for _, path in changes}))
            running = pid_alive(p.sssd_pid) is not None
            if was_running and not running:
                yield "sssd stopped"
            was_running = running

    # --- validate / explain ------------------------------------------------------------------

    def validate(self, node: Node) -> list[str]:
        problems = []
        for w in self.wanted.values():
            try:
                validated_temp(w.sssd_conf, lambda path: check_sssd_conf(node, path, self.paths.sssd_snippets),
                               suffix=".conf")
                if w.sudoers is not None:
                    validated_temp(w.sudoers, lambda path: check_sudoers(node, path))
            except ApplyError as err:
                problems.append(f"{w.name}: {err}")
        return problems

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            m = (change.observed or {}).get("membership") or {}
            return [f"leave {m.get('domain')}: delete computer account {m.get('computerName')}$ in AD, "
                    "stop sssd, remove the files reconcile wrote"]
        want, have = change.desired or {}, change.observed or {}
        notes = []
        if want.get("membership") != have.get("membership"):
            m = want["membership"]
            where = f" in {m['ou']}" if m.get("ou") else ""
            notes.append(f"join {m['domain']} as {m['computerName']}$"
                         f"{where} (adcli, password from {self.wanted[change.name].spec.password.describe()})")
        held = []
        if systemd_running() and (have.get("units") or {}).get("sssd", "enabled") != "enabled":
            held = unit_notes(node, ["sssd.service"], self.enforce)
        if self._sssd_needs_restart(want, have) and have and not any("operator's hold" in n for n in held):
            notes.append("restart sssd (its configuration changes; no rejoin)")
        return notes + held

    # --- health ------------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """AD still accepts the membership (one `adcli testjoin`), and the join user and
        the manifest's groups resolve through NSS and sssd (one `getent` per database)."""
        out: dict[str, Health] = {}
        for name in desired.get(self.kind, {}):
            w = self.wanted.get(name)
            if w is None:
                continue
            member = (observed.get(self.kind, {}).get(name) or {}).get("membership") or {}
            if (member.get("domain"), member.get("computerName")) != (w.spec.domain, w.computer):
                out[name] = Health.degraded("NotJoined", f"not joined to {w.spec.domain} as {w.computer}$")
                continue
            try:
                accepted: bool | None = self.accepted(node, w.spec.domain, timeout=node.runner.default_timeout)
                why = ""
            except (ApplyError, CommandError) as err:
                accepted, why = None, str(err)
            users, groups = resolvable_names(w.spec)
            missing = unresolved(node, "passwd", users) + unresolved(node, "group", groups)
            out[name] = join_health(accepted, why, w.computer, w.spec.domain, missing, len(users) + len(groups))
        return {self.kind: out}

    # --- apply -------------------------------------------------------------------------------

    def apply_one(self, change: Change, node: Node) -> None:
        if change.action == "delete":
            self.leave(change.name, node)
            return
        w = self.wanted[change.name]
        have = change.observed or {}
        self._refuse_foreign_files(w)
        marker = self.read_markers(node).get(w.name) or {}
        if w.state["membership"] != have.get("membership"):
            password = read_secret(w.spec.password, node)  # before anything changes
            member = dict(have.get("membership") or {})
            if member.get("domain"):  # whether the account we may replace is still AD's
                member["valid"] = self.accepted(node, member["domain"])
            marker = self.join(w, node, password, member, marker)
        writer = AtomicWriter(node)
        conf_changed = writer.write(self.paths.sssd_conf, w.sssd_conf, mode=0o600, owner=(0, 0),
                                    validate=lambda tmp: check_sssd_conf(node, tmp, self.paths.sssd_snippets))
        added = self._nsswitch(writer)
        self._pam(writer, w)
        if w.sudoers is None:
            writer.remove(self.paths.sudoers(w.name))
        else:
            install_sudoers(node, self.paths.sudoers(w.name), w.sudoers)
        marker["nsswitchAdded"] = sorted(set(marker.get("nsswitchAdded", [])) | set(added))
        self._write_marker(node, marker)
        if conf_changed or self.sssd_status() != "running":
            self.restart_sssd(node, flush_cache=conf_changed)
        elif systemd_running() and have.get("units") != w.state.get("units"):
            enable_unit(node, unit_states(node, ["sssd.service"])["sssd.service"], self.enforce)

    def _refuse_foreign_files(self, w: Wanted) -> None:
        """Never overwrite an sssd.conf or sudoers file that reconcile did not write."""
        for path in (self.paths.sssd_conf, self.paths.sudoers(w.name)):
            text = _read(path)
            if text is not None and GENERATED_HEADER not in text:
                raise ApplyError(f"{path} exists and was not written by reconcile; move it away "
                                 f"(or merge it into the manifest) before DomainJoin/{w.name} manages it")

    def join(self, w: Wanted, node: Node, password: str, have: dict[str, Any],
             marker: dict[str, Any]) -> dict[str, Any]:
        """Join (or join again); a previous account of ours under another identity is
        deleted first, an account someone else made is never touched."""
        spec = w.spec
        ours = bool(marker) and (marker.get("domain"), marker.get("computerName")) == \
            (have.get("domain"), have.get("computerName"))
        if have.get("domain") and (have.get("domain"), have.get("computerName")) != (spec.domain, w.computer):
            if not ours:
                raise ApplyError(
                    f"this node is joined to {have['domain']} as {have['computerName']}$ by something other than "
                    f"reconcile; leave that domain first (adcli delete-computer) so DomainJoin/{w.name} can join")
            if have.get("valid"):
                old_password = password if marker.get("domain") == spec.domain else read_secret(_secret_ref(marker), node)
                self._delete_computer(node, marker, old_password)
            # The old account's keys go too: adcli would leave them first in the keytab (the
            # next observe would see the old name) and skip host/<fqdn> keys it finds there.
            self._drop_keys(node, marker)
        elif ours and have.get("valid") and have.get("ou") != spec.ou:
            # adcli does not move an existing account: create it anew in the wanted OU
            self._delete_computer(node, marker, password)
        keytab_existed = self.paths.keytab.exists() if not marker else marker.get("keytabExisted", False)
        argv = join_argv(spec, w.computer, self.paths.keytab)
        r = node.run(argv, input=password, secrets=[password], timeout=120, check=False)
        if r.rc != 0:
            hint = (f" (is the password in {spec.password.describe()} right for {spec.user}?)"
                    if "Couldn't authenticate as:" in r.stderr else "")
            raise ApplyError(f"adcli join {spec.domain} as {w.computer}$ failed: {_last_line(r.stderr)}{hint}")
        marker = {
            "name": w.name, "domain": spec.domain, "computerName": w.computer, "ou": spec.ou,
            "user": spec.user, "password": spec.password.model_dump(exclude_none=True),
            "keytabExisted": keytab_existed, "nsswitchAdded": marker.get("nsswitchAdded", []),
            "joined": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._write_marker(node, marker)  # at once: from here on a prune knows what to delete
        return marker

    def _drop_keys(self, node: Node, marker: dict[str, Any], host_names: set[str] | None = None) -> None:
        """Remove the keys of the computer account `marker` describes from the keytab (the
        file itself when only they were in it), checked with `klist -k` before it is installed.
        `host_names`: this host's names, which adcli put in host/ principals (default: asked)."""
        try:
            data = self.paths.keytab.read_bytes()
        except FileNotFoundError:
            return
        if host_names is None:
            fqdn = socket.getfqdn()
            host_names = {fqdn, fqdn.split(".")[0], socket.gethostname()}
        belongs = keytab.machine_account_principals(marker["computerName"], marker["domain"].upper(), host_names)
        try:
            kept = keytab.without(data, belongs)
        except keytab.KeytabError as err:
            raise ApplyError(f"cannot remove {marker['computerName']}$'s keys from {self.paths.keytab}: {err}") from None
        if kept == data:
            return
        writer = AtomicWriter(node)
        if not keytab.principals(kept) and not marker.get("keytabExisted"):
            writer.remove(self.paths.keytab)
            return

        def check(tmp: Path) -> None:
            r = node.run(["klist", "-k", str(tmp)], read_only=True, check=False)
            if r.rc != 0:
                raise ApplyError(f"klist cannot read the keytab without {marker['computerName']}$'s keys: "
                                 f"{_last_line(r.stderr)}")

        writer.write(self.paths.keytab, kept, mode=0o600, owner=(0, 0), validate=check)

    def _delete_computer(self, node: Node, marker: dict[str, Any], password: str) -> None:
        argv = ["adcli", "delete-computer", f"--domain={marker['domain']}", f"--login-user={marker['user']}",
                "--stdin-password", marker["computerName"]]
        r = node.run(argv, input=password, secrets=[password], timeout=120, check=False)
        if r.rc != 0 and "No computer account for" not in r.stderr:  # already gone is what we want
            raise ApplyError(f"cannot delete computer account {marker['computerName']}$ in {marker['domain']}: "
                             f"{_last_line(r.stderr)}")

    def _nsswitch(self, writer: AtomicWriter) -> list[str]:
        text = _read(self.paths.nsswitch) or ""
        new, added = nsswitch_add_sss(text, NSS_DATABASES)
        if added:
            writer.write(self.paths.nsswitch, new)
        return added

    def _pam(self, writer: AtomicWriter, w: Wanted) -> None:
        text = _read(self.paths.pam_session) or ""
        home = w.spec.homeDirectories
        new = pam_with_block(text, w.name, home.skel, home.umask) if home.create else pam_without_block(text, w.name)
        if new != text:
            writer.write(self.paths.pam_session, new)

    def _write_marker(self, node: Node, marker: dict[str, Any]) -> None:
        path = self._marker_dir(node) / f"{marker['name']}.json"
        AtomicWriter(node).write(path, json.dumps(marker, indent=1, sort_keys=True) + "\n", mode=0o600)

    @staticmethod
    def _sssd_needs_restart(want: dict[str, Any], have: dict[str, Any]) -> bool:
        return (want.get("files", {}).get("sssd.conf") != have.get("files", {}).get("sssd.conf")
                or have.get("sssd") != "running")

    # --- sssd --------------------------------------------------------------------------------

    def restart_sssd(self, node: Node, flush_cache: bool) -> None:
        """(Re)start sssd so it reads the current sssd.conf; with systemd through systemctl,
        without it as a daemon of its own (pid file /run/sssd.pid)."""
        if systemd_running():  # an operator's hold on sssd.service raises Held (base.enable_unit)
            enable_unit(node, unit_states(node, ["sssd.service"])["sssd.service"], self.enforce)
            node.run(["systemctl", "restart", "sssd.service"])
        else:
            self.stop_sssd(node)
            # --logger=files: without journald, sssd's default logger would drop everything
            node.run(["sssd", "-D", "--logger=files"])
            if not _wait(lambda: pid_alive(self.paths.sssd_pid) is not None, 15):
                raise ApplyError("sssd did not start (no live pid in /run/sssd.pid after 15s; see /var/log/sssd)")
        if flush_cache:
            # entries cached under the old settings (home, names) would outlive the change
            node.run(["sss_cache", "-E"], check=False)

    def stop_sssd(self, node: Node) -> None:
        if systemd_running():
            # Stopped, not disabled: as the package leaves it, enabled and skipped at boot
            # by its unit's condition once sssd.conf is gone (so a new join is not "held").
            node.run(["systemctl", "stop", "sssd.service"], check=False)
            return
        pid = pid_alive(self.paths.sssd_pid)
        if pid is None:
            return
        node.run(["kill", "-TERM", str(pid)], check=False)
        if not _wait(lambda: pid_alive(self.paths.sssd_pid) != pid, 15):
            raise ApplyError(f"sssd (pid {pid}) did not stop within 15s")

    # --- leave -------------------------------------------------------------------------------

    def leave(self, name: str, node: Node) -> None:
        """Leave the domain and remove, in reverse, what the join wrote. Each step is
        idempotent: a prune that failed halfway is simply run again.

        When another DomainJoin of this node still has a record (a manifest renamed: the
        new name joined before the old one is pruned), the node stays joined: only the old
        name's own files go, and what the node shares (account, keytab, sssd.conf, the
        nsswitch additions) is handed over to the other record."""
        markers = self.read_markers(node)
        marker = markers.pop(name, None)
        if marker is None:
            raise ApplyError(f"no record of how DomainJoin/{name} joined ({self._marker_dir(node)}/{name}.json); "
                             "leave the domain by hand (adcli delete-computer) and remove its files")
        writer = AtomicWriter(node)
        heir = next(iter(markers.values()), None)
        if heir is None:
            self._leave_domain(node, marker, writer)
        else:
            heir["nsswitchAdded"] = sorted(set(heir.get("nsswitchAdded", [])) | set(marker.get("nsswitchAdded", [])))
            heir["keytabExisted"] = bool(heir.get("keytabExisted")) and bool(marker.get("keytabExisted"))
            self._write_marker(node, heir)
        if GENERATED_HEADER in (_read(self.paths.sudoers(name)) or ""):
            writer.remove(self.paths.sudoers(name))
        text = _read(self.paths.pam_session)
        if text is not None and pam_without_block(text, name) != text:
            writer.write(self.paths.pam_session, pam_without_block(text, name))
        writer.remove(self._marker_dir(node) / f"{name}.json")

    def _leave_domain(self, node: Node, marker: dict[str, Any], writer: AtomicWriter) -> None:
        password = read_secret(_secret_ref(marker), node)  # before anything changes
        membership = self.observe_membership(node, (marker["domain"], marker["computerName"]), check=True)
        if membership and (membership["domain"], membership["computerName"]) == (marker["domain"], marker["computerName"]):
            if membership["valid"]:
                self._delete_computer(node, marker, password)
        if GENERATED_HEADER in (_read(self.paths.sssd_conf) or ""):
            self.stop_sssd(node)
            writer.remove(self.paths.sssd_conf)
            for cache in self.paths.sssd_db.glob(f"*_{marker['domain']}.ldb"):
                writer.remove(cache)
            for cache in self.paths.sssd_db.glob(f"ccache_{marker['domain'].upper()}"):
                writer.remove(cache)
            for cache in self.paths.sssd_mc.glob("*"):  # libnss_sss reads these with sssd stopped
                if cache.is_file():
                    writer.remove(cache)
        if marker.get("nsswitchAdded"):
            text = _read(self.paths.nsswitch) or ""
            writer.write(self.paths.nsswitch, nsswitch_remove_sss(text, marker["nsswitchAdded"]))
        if not marker.get("keytabExisted"):
            writer.remove(self.paths.keytab)
        else:  # keep what was there before the join, without the account's keys
            self._drop_keys(node, marker)


# --- small helpers -------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _secret_ref(marker: dict[str, Any]) -> Any:
    from schemas.common import SecretRef

    return SecretRef.model_validate(marker.get("password") or {})


def _wait(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def process_start_time(pid: int) -> float | None:
    """When a process started, in seconds since the epoch (from /proc; None if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")
