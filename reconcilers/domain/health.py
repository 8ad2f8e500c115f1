"""Health of a DomainJoin: AD still accepts the membership (one `adcli testjoin`, a round
trip to a DC: health, never sync), and the names the manifest relies on resolve through NSS
and sssd (one `getent` per database). The verdicts are pure functions of parsed outputs."""
from __future__ import annotations

from typing import Any

from reconcilers.base import Health, Node


def resolvable_names(spec: Any) -> tuple[list[str], list[str]]:
    """(users, groups) that must resolve on a joined node, as sssd names them: the join
    user (adcli joins) and the users and groups the manifest allows or gives sudo
    (lower-case; `@domain` when names are fully qualified)."""
    def named(name: str) -> str:
        name = name.lower()
        return name + f"@{spec.domain}" if getattr(spec, "fullyQualifiedNames", False) and "@" not in name else name

    joins = spec.joins() if hasattr(spec, "joins") else True
    users = [named(spec.user)] if joins else []
    users += [named(u) for u in [*getattr(spec, "allowUsers", []), *(u for r in getattr(spec, "sudo", [])
                                                                     for u in r.users)]]
    groups = [named(g) for g in [*spec.allowGroups, *spec.sudoGroups, *(g for r in getattr(spec, "sudo", [])
                                                                       for g in r.groups)]]
    return list(dict.fromkeys(users)), list(dict.fromkeys(groups))


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


def names_health(domain: str, missing: list[str], asked: int) -> Health:
    """An LDAP client without a machine account: the names are all there is to judge."""
    if missing:
        return Health.degraded("NamesNotResolving", f"{', '.join(missing)} do{'es' if len(missing) == 1 else ''} "
                                                    f"not resolve through sssd ({domain})")
    return Health.healthy("NamesResolve", f"{asked} user and group name{'s' if asked != 1 else ''} of {domain} "
                                          "resolve")
