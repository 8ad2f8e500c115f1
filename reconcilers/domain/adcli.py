"""Membership in Active Directory: the computer account made by `adcli join`, its keys in
the host keytab, and `adcli testjoin`.

Sync is local: the keytab holds the desired machine principal. Whether AD still accepts it
(`adcli testjoin`, a round trip to a DC, ~0.45 s) is health, not sync: observe never asks;
apply asks before it replaces an account, and leave before it deletes one. The join password
goes on stdin, never in argv.
"""
from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from reconcilers.base import ApplyError, AtomicWriter, Node
from reconcilers.domain import keytab

# adcli testjoin's reasons that mean "AD does not accept this membership" (the account is
# gone, its password was reset, it was disabled). Anything else (no DC answers, no KDC)
# says nothing about the membership.
_NOT_JOINED = ("not found in Kerberos database", "Preauthentication failed", "credentials have been revoked")


def default_computer_name(node: str) -> str:
    """What `adcli join` uses without --computer-name on that node: its short name (the
    node is the machine: its host name), upper-case, cut to the 15 characters of a NetBIOS
    name. From the node's name, not a host lookup: desired() is pure."""
    return node.split(".")[0].upper()[:15]


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
            m = re.fullmatch(r"([A-Za-z0-9-]{1,15})\$@([A-Za-z0-9.-]+)", parts[1])
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


def membership(node: Node, keytab_path: Path, prefer: tuple[str, str] | None = None) -> dict[str, Any] | None:
    """{domain, computerName} of the machine principal in the keytab (one `klist -k`)."""
    if not keytab_path.exists():
        return None
    r = node.run(["klist", "-k", str(keytab_path)], read_only=True, check=False)
    found = parse_keytab_list(r.stdout, prefer) if r.rc == 0 else None
    return None if found is None else {"domain": found[0], "computerName": found[1]}


def accepted(node: Node, domain: str, keytab_path: Path, timeout: float = 30) -> bool:
    """`adcli testjoin`: True accepted, False refused by AD; ApplyError when no DC could be
    asked (that says nothing about the membership)."""
    t = node.run(["adcli", "testjoin", f"--domain={domain}", f"--host-keytab={keytab_path}"],
                 read_only=True, check=False, timeout=timeout)
    return membership_accepted(t.rc, t.stderr)


def join_argv(spec: Any, computer: str, keytab_path: Path) -> list[str]:
    """`adcli join` for a spec: every value in an `--option=value` argument of its own (the
    password goes on stdin); pinned to the first of `adServers` when the manifest pins them."""
    argv = ["adcli", "join", f"--domain={spec.domain}", f"--login-user={spec.user}", "--stdin-password",
            f"--computer-name={computer}", f"--host-keytab={keytab_path}"]
    if spec.adServers:
        argv.append(f"--domain-controller={host_of(spec.adServers[0])}")
    if spec.ou:
        argv.append(f"--domain-ou={spec.ou}")
    return argv


def host_of(server: str) -> str:
    """`dc1.corp.example.test:389` → `dc1.corp.example.test`; `[2001:db8::2]:389` → `2001:db8::2`."""
    if server.startswith("["):
        return server[1:server.index("]")]
    return server.split(":", 1)[0]


def join(node: Node, spec: Any, computer: str, keytab_path: Path, password: str) -> None:
    r = node.run(join_argv(spec, computer, keytab_path), input=password, secrets=[password], timeout=120, check=False)
    if r.rc != 0:
        hint = (f" (is the password in {spec.password.describe()} right for {spec.user}?)"
                if "Couldn't authenticate as:" in r.stderr else "")
        raise ApplyError(f"adcli join {spec.domain} as {computer}$ failed: {last_line(r.stderr)}{hint}")


def delete_computer(node: Node, marker: dict[str, Any], password: str) -> None:
    argv = ["adcli", "delete-computer", f"--domain={marker['domain']}", f"--login-user={marker['user']}",
            "--stdin-password", marker["computerName"]]
    r = node.run(argv, input=password, secrets=[password], timeout=120, check=False)
    if r.rc != 0 and "No computer account for" not in r.stderr:  # already gone is what we want
        raise ApplyError(f"cannot delete computer account {marker['computerName']}$ in {marker['domain']}: "
                         f"{last_line(r.stderr)}")


def drop_keys(node: Node, keytab_path: Path, marker: dict[str, Any], host_names: set[str] | None = None) -> None:
    """Remove the keys of the computer account `marker` describes from the keytab (the
    file itself when only they were in it), checked with `klist -k` before it is installed.
    `host_names`: this host's names, which adcli put in host/ principals (default: asked)."""
    try:
        data = keytab_path.read_bytes()
    except FileNotFoundError:
        return
    if host_names is None:
        fqdn = socket.getfqdn()
        host_names = {fqdn, fqdn.split(".")[0], socket.gethostname()}
    belongs = keytab.machine_account_principals(marker["computerName"], marker["domain"].upper(), host_names)
    try:
        kept = keytab.without(data, belongs)
    except keytab.KeytabError as err:
        raise ApplyError(f"cannot remove {marker['computerName']}$'s keys from {keytab_path}: {err}") from None
    if kept == data:
        return
    writer = AtomicWriter(node)
    if not keytab.principals(kept) and not marker.get("keytabExisted"):
        writer.remove(keytab_path)
        return

    def check(tmp: Path) -> None:
        r = node.run(["klist", "-k", str(tmp)], read_only=True, check=False)
        if r.rc != 0:
            raise ApplyError(f"klist cannot read the keytab without {marker['computerName']}$'s keys: "
                             f"{last_line(r.stderr)}")

    writer.write(keytab_path, kept, mode=0o600, owner=(0, 0), validate=check)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
