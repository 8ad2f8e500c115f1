"""Files beside haproxy.cfg that reconcile writes from references: certificates (replaced
at run time, hitless), other secret files, map and ACL files (changed at run time).

A certificate's source (`{file:}` or `{env:}`) is read on the node when it is observed,
planned or installed, never copied into git, a plan or a log. The plan shows what a
certificate is (subject, names, expiry, fingerprint), never the key. A certificate
already loaded is replaced with `set ssl cert` + `commit ssl cert` and its file written in
the same step: no reload, no connection cut.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path

from reconcilers.base import ApplyError, AtomicWriter, Node
from reconcilers.haproxy.render import ManagedFile
from reconcilers.haproxy.runtime import RuntimeAPI, Session
from schemas.common import SecretRef

IN_SYNC = "in sync"


def read_source(ref: SecretRef, node: Node) -> bytes:
    """The content a reference names, registered for redaction; ApplyError if absent."""
    if ref.file:
        try:
            data = Path(ref.file).read_bytes()
        except FileNotFoundError:
            raise ApplyError(f"{ref.file} does not exist on node {node.name}") from None
        except OSError as err:
            raise ApplyError(f"cannot read {ref.file}: {err.strerror or err}") from None
    else:
        value = os.environ.get(ref.env or "", "")
        if not value:
            raise ApplyError(f"environment variable {ref.env} is not set for the agent")
        data = value.encode()
    node.runner.add_secret(data.decode(errors="replace"))
    return data


def _first_cert_der(pem: bytes) -> bytes | None:
    import ssl

    m = re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    if not m:
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(m.group(0).decode())
    except ValueError:
        return None


def sha1_fingerprint(pem: bytes) -> str | None:
    der = _first_cert_der(pem)
    return hashlib.sha1(der).hexdigest().upper() if der else None


def describe_certificate(pem: bytes) -> str:
    """Subject, names, expiry and fingerprint of the first certificate in `pem`, for
    people (never the key)."""
    der = _first_cert_der(pem)
    if der is None:
        return "no certificate found in it"
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            sans = ", ".join(str(n.value) for n in names)
        except x509.ExtensionNotFound:
            sans = "none"
        expires = cert.not_valid_after.replace(tzinfo=dt.timezone.utc)
        left = (expires - dt.datetime.now(dt.timezone.utc)).days
        subject = cert.subject.rfc4514_string()
    except Exception as err:  # an unreadable certificate is haproxy -c's to refuse
        return f"unreadable certificate ({type(err).__name__})"
    return (f"subject {subject}, names {sans}, expires {expires:%Y-%m-%d} ({left} days), "
            f"SHA-1 {hashlib.sha1(der).hexdigest().upper()}")


def running_fingerprints(api: RuntimeAPI, paths: list[str]) -> dict[str, str]:
    """The SHA-1 fingerprint of each certificate file HAProxy has loaded (one `show ssl
    cert` per file; an unknown file is left out)."""
    out = {}
    for path in paths:
        try:
            text = api.command(f"show ssl cert {path}", read_only=True)
        except ApplyError:
            continue
        m = re.search(r"^SHA1 FingerPrint:\s*([0-9A-F]+)", text, re.M)
        if m:
            out[path] = m.group(1)
    return out


def file_token(path: str, managed: ManagedFile, node: Node, running: dict[str, str]) -> str:
    """How an installed file compares with its source: the reference when it is in sync
    (what `desired` says), else what differs. Read-only."""
    try:
        source = read_source(managed.ref, node)
    except ApplyError as err:
        return f"<source unreadable: {err}>"
    try:
        on_disk = Path(path).read_bytes()
    except OSError:
        return "<not written>"
    if on_disk != source:
        return "<differs from its source>"
    if managed.certificate and path in running and running[path] != sha1_fingerprint(source):
        return "<HAProxy runs another certificate>"
    return managed.ref.describe()


def write_file(node: Node, path: str, content: bytes) -> bool:
    return AtomicWriter(node).write(path, content, mode=0o600)


def replace_certificate(cli: Session, path: str, pem: bytes) -> None:
    """Hand HAProxy a new certificate for a loaded file and commit it (no reload)."""
    text = pem.decode().strip("\n")
    cli.api.node.runner.add_secret(text)
    # The payload is the certificate and its key: recorded and logged as a token only.
    cli.api.node.runner.guard("haproxy-api", [f"set ssl cert {path} <<payload>>"], read_only=False)
    answer = cli.send_payload(f"set ssl cert {path} <<\n{text}\n")
    if "Transaction created" not in answer and "Transaction updated" not in answer:
        raise ApplyError(f"HAProxy refused the new certificate for {path}: {answer.strip()[:200] or '(no answer)'}")
    answer = cli.command(f"commit ssl cert {path}", read_only=False)
    if "Success" not in answer:
        raise ApplyError(f"HAProxy did not commit the new certificate for {path}: {answer.strip()[:200]}")


# --- map and ACL files ---------------------------------------------------------------------


def map_text(entries: dict[str, str]) -> str:
    return "".join(f"{k} {v}\n" for k, v in entries.items())


def acl_text(patterns: list[str]) -> str:
    return "".join(f"{p}\n" for p in patterns)


def parse_map(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def parse_acl(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def running_map(api: RuntimeAPI, kind: str, path: str) -> list[tuple[str, str]] | None:
    """A map's (or ACL's) entries as HAProxy runs them; None if it has not loaded it."""
    try:
        text = api.command(f"show {kind} {path}", read_only=True)
    except ApplyError:
        return None
    if text.startswith(("Unknown", "Missing")):
        return None
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 2)  # 0xADDR key [value]
        if len(parts) >= 2 and parts[0].startswith("0x"):
            rows.append((parts[1], parts[2] if len(parts) > 2 else ""))
    return rows


def replace_entries(cli: Session, kind: str, path: str, rows: list[tuple[str, str]]) -> None:
    """Replace a loaded map's or ACL's entries atomically: prepare a new version, fill it,
    commit it."""
    answer = cli.command(f"prepare {kind} {path}", read_only=False)
    m = re.search(r"New version created:\s*(\d+)", answer)
    if not m:
        raise ApplyError(f"HAProxy refused `prepare {kind} {path}`: {answer.strip()[:200]}")
    version = m.group(1)
    for key, value in rows:
        cli.checked(f"add {kind} @{version} {path} {key}{(' ' + value) if value else ''}")
    cli.checked(f"commit {kind} @{version} {path}")
