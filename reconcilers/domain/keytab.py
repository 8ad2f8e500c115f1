"""The MIT Kerberos keytab file (/etc/krb5.keytab): list its principals, drop some.

The format (version 0x0502, what MIT krb5 and adcli write): two version bytes, then
records, each a signed 32-bit big-endian length followed by that many bytes; a negative
length is a hole of that many bytes (a deleted entry). An entry starts with the number of
name components (16 bits), the realm and each component as 16-bit counted strings, then
the name type, timestamp, key version and key. Entries are copied byte for byte: only the
principal is read.

DomainJoin uses it when a computer is renamed: `adcli join` as the new name leaves the
old account's keys in place (and does not write new keys for principals the keytab has
already, such as host/<fqdn>), so the old name would stay the first machine principal of
the keytab. The old account's entries are dropped before the new join.
"""
from __future__ import annotations

import struct
from typing import Callable, Iterator

VERSION = b"\x05\x02"


class KeytabError(ValueError):
    """Not a keytab this module can read (another version, or cut short)."""


def _entries(data: bytes) -> Iterator[tuple[bytes, str | None]]:
    """(record bytes with their length, principal `comp/comp@REALM` or None for a hole)."""
    if data[:2] != VERSION:
        raise KeytabError(f"not a version 0x0502 keytab (starts with {data[:2].hex() or 'nothing'})")
    pos = 2
    while pos < len(data):
        if pos + 4 > len(data):
            raise KeytabError("cut short in a record length")
        (size,) = struct.unpack_from(">i", data, pos)
        end = pos + 4 + abs(size)
        if end > len(data):
            raise KeytabError("cut short in a record")
        record = data[pos:end]
        yield record, (None if size <= 0 else _principal(record[4:]))
        pos = end


def _principal(entry: bytes) -> str:
    try:
        (count,) = struct.unpack_from(">H", entry, 0)
        pos, words = 2, []
        for _ in range(count + 1):  # the realm, then each component
            (n,) = struct.unpack_from(">H", entry, pos)
            words.append(entry[pos + 2:pos + 2 + n].decode("utf-8", "replace"))
            pos += 2 + n
    except struct.error:
        raise KeytabError("an entry is cut short in its principal") from None
    realm, components = words[0], words[1:]
    return "/".join(components) + "@" + realm


def principals(data: bytes) -> list[str]:
    """Every entry's principal, in file order (repeated once per key)."""
    return [p for _, p in _entries(data) if p is not None]


def without(data: bytes, drop: Callable[[str], bool]) -> bytes:
    """The keytab without the entries whose principal `drop` says, and without holes."""
    return VERSION + b"".join(record for record, p in _entries(data) if p is not None and not drop(p))


def machine_account_principals(computer: str, realm: str, host_names: set[str]) -> Callable[[str], bool]:
    """What `adcli join --computer-name=COMPUTER` writes for a computer account: COMPUTER$,
    and host/ and RestrictedKrbHost/ for COMPUTER and for this host's name(s)."""
    own = {computer.lower()} | {h.lower() for h in host_names}

    def belongs(principal: str) -> bool:
        name, _, at = principal.rpartition("@")
        if at.upper() != realm.upper():
            return False
        if name.lower() == f"{computer.lower()}$":
            return True
        service, _, host = name.partition("/")
        return service.lower() in ("host", "restrictedkrbhost") and host.lower() in own

    return belongs
