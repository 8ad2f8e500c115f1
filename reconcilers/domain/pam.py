"""PAM: a marked `pam_mkhomedir` line (with skel and umask) at the end of
/etc/pam.d/common-session, so that a domain user's home exists at first login.

Debian's mkhomedir profile takes no arguments, and a profile of our own would live in
/usr/share, which is not configuration; pam-auth-update keeps lines outside its block,
so ours goes after it. Every argument goes through `pam_argument`.
"""
from __future__ import annotations

from pathlib import Path

from reconcilers.base import GENERATED_HEADER, UnsafeValue, one_line

SESSION = Path("/etc/pam.d/common-session")


def pam_argument(key: str, value: str) -> str:
    """`key=value`, one module argument of a PAM line, as it is; refused (UnsafeValue) when
    libpam would read it otherwise: a blank splits arguments, '[' ']' group them, '#'
    starts a comment anywhere on the line, and a backslash at the end continues the line."""
    text = one_line(f"{key}={value}", "a PAM line", max_length=512)
    if not value or any(c.isspace() or c in "[]#\\" for c in text):
        raise UnsafeValue(f"PAM line: refused argument {text!r}: it may not be empty or hold blanks, [ ], # or \\")
    return text


BLOCK_BEGIN = "# >>> reconcile DomainJoin/"


def _pam_markers(name: str) -> tuple[str, str]:
    return f"{BLOCK_BEGIN}{name}", f"# <<< reconcile DomainJoin/{name}"


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


