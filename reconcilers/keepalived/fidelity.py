"""The round-trip rule, measured: does a rendered keepalived.conf keep every directive of the
file it was imported from?

A directive is a statement with where it stands: the headers of the blocks around it, its
keyword and its words. The comparison reads both files with the same parser and counts
each directive of the original found in the rendering (as a multiset), with the only
normalizations keepalived itself makes or reconcile names:

- one instance per address family: an address of `VI_1` that reconcile renders in
  `VI_1_v6` counts as kept (the rendering's `NAME_v4`/`NAME_v6` stand for NAME);
- the order of the words after an address in `virtual_ipaddress` and similar lists
  (`dev eth0 label eth0:1` = `label eth0:1 dev eth0`: keepalived reads them as pairs);
- `vrrp_track_file`, the deprecated name of `track_file`;
- `nopreempt ARG`: keepalived ignores the argument (a keyword match, not a value match).

`added` lists the rendering's directives the original does not have: reconcile's own.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from reconcilers.keepalived.conf import Stmt, parse

SYNONYMS = {"vrrp_track_file": "track_file"}
LIST_BLOCKS = frozenset({"virtual_ipaddress", "virtual_ipaddress_excluded", "static_ipaddress", "unicast_peer",
                         "virtual_routes", "virtual_rules", "static_routes", "static_rules"})
IGNORED_ARGS = frozenset({"nopreempt"})

Directive = tuple[tuple[str, ...], str, tuple[str, ...]]


def directives(stmts: list[Stmt], aliases: dict[str, str] | None = None,
               path: tuple[str, ...] = ()) -> list[Directive]:
    aliases = aliases or {}
    out: list[Directive] = []
    for s in stmts:
        keyword = SYNONYMS.get(s.keyword, s.keyword)
        args = tuple(s.args)
        if path and path[-1].split(" ")[0] in LIST_BLOCKS:
            args = tuple(sorted(args))
        if keyword == "vrrp_instance" and args and args[0] in aliases:
            args = (aliases[args[0]],) + args[1:]
        out.append((path, keyword, args))
        if s.is_block:
            out += directives(s.body or [], aliases, path + (" ".join((keyword,) + args),))
    return out


@dataclass
class Fidelity:
    total: int = 0
    keywords_kept: int = 0
    values_kept: int = 0
    missing: list[str] = field(default_factory=list)  # directives of the original not rendered as written
    added: list[str] = field(default_factory=list)  # the rendering's own directives

    @property
    def keyword_share(self) -> float:
        return self.keywords_kept / self.total if self.total else 1.0

    @property
    def value_share(self) -> float:
        return self.values_kept / self.total if self.total else 1.0


def _show(d: Directive) -> str:
    return " > ".join(d[0] + (" ".join((d[1],) + d[2]),))


def compare(original: str, rendered: str) -> Fidelity:
    """How much of `original` the `rendered` file keeps (see the module docstring)."""
    before = parse(original)
    names = {s.args[0] for s in before if s.keyword == "vrrp_instance" and s.args}
    after = parse(rendered)
    aliases = {s.args[0]: s.args[0][:-3] for s in after if s.keyword == "vrrp_instance" and s.args
               and s.args[0][-3:] in ("_v4", "_v6") and s.args[0][:-3] in names and s.args[0] not in names}
    want, have = directives(before), Counter(directives(after, aliases))
    by_keyword = Counter((p, k) for p, k, _ in have.elements())
    result = Fidelity(total=len(want))
    for d in want:
        path, keyword, args = d
        if have[d] > 0:
            have[d] -= 1
            by_keyword[(path, keyword)] -= 1
            result.values_kept += 1
            result.keywords_kept += 1
            continue
        if by_keyword[(path, keyword)] > 0:
            by_keyword[(path, keyword)] -= 1
            result.keywords_kept += 1
            if keyword in IGNORED_ARGS:
                result.values_kept += 1
                continue
        result.missing.append(_show(d))
    result.added = [_show(d) for d in have.elements()]
    return result
