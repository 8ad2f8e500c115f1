"""nsswitch.conf: `sss` on the passwd, group and shadow lines. Only those lines are edited,
and on removal only the `sss` this reconciler added is taken away."""
from __future__ import annotations

import re

NSS_DATABASES = ("passwd", "group", "shadow")


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


