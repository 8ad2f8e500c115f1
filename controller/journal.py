"""Logging to the systemd journal with structured fields, without libsystemd.

The journal's native protocol is one datagram per entry on /run/systemd/journal/socket:
`FIELD=value` lines, or for a value with a newline `FIELD`, a newline, its length as a
64-bit little-endian integer, the bytes and a newline (systemd.journal-fields(7),
"Native Journal Protocol"). A few lines, so no dependency on python3-systemd.

Each entry carries MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE/LINE/FUNC, LOGGER and,
from a record's `extra`, RECONCILE_REVISION, RECONCILE_OBJECT (`Kind/name`),
RECONCILE_STATUS and RECONCILE_TRIGGER, so that an operator can ask

    journalctl -u reconcile-agent RECONCILE_OBJECT=Frontend/web
    journalctl -u reconcile-agent RECONCILE_REVISION=<sha> -o verbose

`journal_handler()` returns the handler when the process's stderr is the journal (systemd
sets JOURNAL_STREAM for a unit whose output goes there), else None.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import sys

SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "reconcile"
# record attribute (from `extra=`) → journal field
EXTRA_FIELDS = {"revision": "RECONCILE_REVISION", "object": "RECONCILE_OBJECT", "status": "RECONCILE_STATUS",
                "trigger": "RECONCILE_TRIGGER"}
MAX_MESSAGE = 48 * 1024  # one datagram; the agent's messages are far shorter


def syslog_priority(level: int) -> int:
    """syslog(3) priority of a logging level: ERROR 3, WARNING 4, INFO 6, DEBUG 7."""
    if level >= logging.CRITICAL:
        return 2
    if level >= logging.ERROR:
        return 3
    if level >= logging.WARNING:
        return 4
    return 6 if level >= logging.INFO else 7


def encode(fields: dict[str, str]) -> bytes:
    """One journal entry in the native protocol."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """A logging handler that writes entries to the journal's native socket."""

    def __init__(self, path: str = SOCKET, identifier: str = IDENTIFIER) -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = self.format(record)
        fields = {
            "MESSAGE": message[:MAX_MESSAGE],
            "PRIORITY": str(syslog_priority(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
        }
        for attr, field in EXTRA_FIELDS.items():
            value = getattr(record, attr, None)
            if value:
                fields[field] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sock.sendto(encode(self.fields(record)), self.path)
        except Exception:  # noqa: BLE001 - logging must never take the agent down
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def stderr_is_journal(environ: dict[str, str] | None = None) -> bool:
    """Whether stderr is connected to the journal: JOURNAL_STREAM is `device:inode` of the
    stream systemd gave the unit, and stderr is still that stream (not redirected)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def journal_handler() -> JournalHandler | None:
    """The handler to use when running as a systemd unit logging to the journal."""
    if not stderr_is_journal() or not os.path.exists(SOCKET):
        return None
    return JournalHandler()
