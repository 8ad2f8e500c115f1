"""The join's sudo rules: /etc/sudoers.d/reconcile-NAME, checked by `visudo -c` before it
is installed (0440 root).

A rule is one line: `%group ALL=(runas) [NOPASSWD: ]command, command`. Names are written
as sssd reports them (lower-case; `@domain` appended with fully qualified names) and every
word goes through `sudoers_escape` (names) or `sudoers_command` (commands).
"""
from __future__ import annotations

import re
from typing import Any

from reconcilers.base import GENERATED_HEADER, ApplyError, Node, UnsafeValue, one_line


def sudoers_escape(name: str) -> str:
    """A sudoers word: every character that is not plainly a name character is escaped.

    sudoers(5) needs a backslash before space and , : = ( ) ! \\; escaping the rest of the
    few characters a GroupName may hold (' . @) is harmless. `%"web users"` is *not* the
    quoted form sudo reads (visudo: "empty group"), the backslash form is. Refused
    (UnsafeValue): an empty name, and anything that is not one line (a backslash before a
    newline continues the rule on the next line).
    """
    one_line(name, "sudoers", max_length=256)
    if not name:
        raise UnsafeValue("sudoers: refused an empty name")
    return "".join(c if c.isalnum() or c in "_-." else "\\" + c for c in name)


def sudoers_unescape(word: str) -> str:
    return re.sub(r"\\(.)", r"\1", word)


def sudoers_command(command: str) -> str:
    """A command of a rule: ALL, or a program path and its arguments, with the characters
    sudoers gives a meaning there (, : = \\ #) escaped; refused when not one line."""
    one_line(command, "sudoers", max_length=1024)
    if not command:
        raise UnsafeValue("sudoers: refused an empty command")
    if command == "ALL":
        return command
    if any(c in command for c in "()!"):
        raise UnsafeValue(f"sudoers: refused command {command!r}: ( ) and ! mean something in a rule")
    return re.sub(r"([,:=\\#])", r"\\\1", command)


def qualified(name: str, spec: Any) -> str:
    """A domain user or group as sssd names it: lower-case, `@domain` with fully qualified names."""
    name = name.lower()
    if spec.fullyQualifiedNames and "@" not in name:
        name += f"@{spec.domain}"
    return name


def rule_lines(spec: Any) -> list[str]:
    """Every rule of the join as one sudoers line, in order: `sudoGroups` (any command) first."""
    lines: list[str] = []
    for group in spec.sudoGroups:
        line = f"%{sudoers_escape(qualified(group, spec))} ALL=(ALL:ALL) ALL"
        if line not in lines:
            lines.append(line)
    for rule in spec.sudo:
        who = [f"%{sudoers_escape(qualified(g, spec))}" for g in rule.groups]
        who += [sudoers_escape(qualified(u, spec)) for u in rule.users]
        run_as = ":".join(sudoers_escape(part) if part else "" for part in rule.runAs.split(":"))
        tag = "NOPASSWD: " if rule.noPassword else ""
        commands = ", ".join(sudoers_command(c) for c in rule.commands)
        lines.append(f"{', '.join(who)} ALL=({run_as}) {tag}{commands}")
    return lines


def render_sudoers(name: str, lines: list[str]) -> str | None:
    if not lines:
        return None
    return "\n".join([f"# {GENERATED_HEADER}", f"# DomainJoin/{name}: sudo rules for domain users and groups",
                      *lines]) + "\n"


def parse_rules(text: str) -> list[str]:
    """The rule lines of a sudoers file (comments and blank lines left out, blanks folded)."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not (stripped.startswith("#") and not stripped.startswith(("#include", "#includedir"))):
            out.append(" ".join(stripped.split()))
    return out


def check_sudoers(node: Node, path: Any) -> None:
    """`visudo -cf`: a file visudo refuses is never installed."""
    r = node.run(["visudo", "-c", "-f", str(path)], read_only=True, check=False)
    if r.rc != 0:
        detail = " | ".join((r.stderr or r.stdout).strip().splitlines()[:3])
        raise ApplyError(f"visudo refuses the sudoers rules: {detail}")
