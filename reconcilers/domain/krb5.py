"""/etc/krb5.conf: written whole from a DomainJoin's `krb5`, read back for the plan, and
checked by MIT Kerberos itself (the library parses the profile when a tool starts).

The profile language: `[section]` headers, `name = value` relations, `name = {` … `}`
subsections; `#` and `;` start a comment line. A value holding `{` or `}` would open or
close a block, a newline another relation: `krb5_value` refuses them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from reconcilers.base import GENERATED_HEADER, ApplyError, Node, UnsafeValue, one_line

PATH = Path("/etc/krb5.conf")


def krb5_value(value: Any) -> str:
    """A relation's value, as it is; refused (UnsafeValue) when the profile parser would read
    it otherwise: empty, blanks at either end, a brace, or not one line."""
    text = one_line(str(value), "krb5.conf", max_length=1024)
    if not text or text != text.strip() or "{" in text or "}" in text:
        raise UnsafeValue(f"krb5.conf: refused to write {text!r}: a value there is not empty, has no blanks at "
                          "either end and no braces")
    return text


def bool_word(value: bool) -> str:
    return "true" if value else "false"


def render_krb5_conf(name: str, domain: str, realm: str, krb5: Any) -> str:
    v = krb5_value
    dns_kdc = krb5.dnsLookupKdc if krb5.dnsLookupKdc is not None else not krb5.kdcs
    lines = [f"# {GENERATED_HEADER}", f"# DomainJoin/{v(name)}: Kerberos realm {v(realm)}", "",
             "[libdefaults]", f"\tdefault_realm = {v(realm)}", f"\tdns_lookup_realm = {bool_word(krb5.dnsLookupRealm)}",
             f"\tdns_lookup_kdc = {bool_word(dns_kdc)}", f"\trdns = {bool_word(krb5.rdns)}"]
    lines += [f"\t{v(k)} = {v(x)}" for k, x in krb5.libdefaults.items()]
    lines += ["", "[realms]", f"\t{v(realm)} = {{"]
    lines += [f"\t\tkdc = {v(kdc)}" for kdc in krb5.kdcs]
    if krb5.adminServer:
        lines.append(f"\t\tadmin_server = {v(krb5.adminServer)}")
    lines.append(f"\t\tdefault_domain = {v(domain)}")
    lines += [f"\t\t{v(k)} = {v(x)}" for k, x in krb5.realmOptions.items()]
    lines += ["\t}", "", "[domain_realm]", f"\t.{v(domain)} = {v(realm)}", f"\t{v(domain)} = {v(realm)}"]
    return "\n".join(lines) + "\n"


def parse_krb5_conf(text: str) -> dict[str, Any]:
    """The profile as nested dicts: {section: {name: value | [values] | {subsection}}};
    a relation given twice becomes a list (kdc = a, kdc = b)."""
    root: dict[str, Any] = {}
    stack: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            stack = [root.setdefault(line[1:-1].strip(), {})]
            continue
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        if not stack:
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if value == "{":
            sub: dict[str, Any] = {}
            stack[-1][key] = sub
            stack.append(sub)
            continue
        have = stack[-1].get(key)
        stack[-1][key] = value if have is None else (have if isinstance(have, list) else [have]) + [value]
    return root


def check_krb5_conf(node: Node, path: Path) -> None:
    """MIT Kerberos parses the profile at context start: `klist -k` of a keytab that does
    not exist, with KRB5_CONFIG pointing at the candidate, fails with "Improper format"
    (or "Syntax error") for a profile it cannot read, and with "not found" otherwise."""
    r = node.run(["klist", "-k", str(path) + ".no-such-keytab"], read_only=True, check=False,
                 env={"KRB5_CONFIG": str(path)})
    out = (r.stderr + r.stdout).strip()
    if "Improper format" in out or "yntax error" in out:
        raise ApplyError(f"MIT Kerberos refuses the krb5.conf: {out.splitlines()[-1] if out else r.rc}")
