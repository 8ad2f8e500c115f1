"""sssd.conf: read as sssd reads it, written from a DomainJoin, checked by `sssctl`.

sssd's INI parser (libini_config): `[section]` headers, `key = value` lines (the first `=`
splits them; blanks around key and value are dropped), `#` and `;` start a comment line
(there are no inline comments), a line that starts with a blank continues the previous
value. A line without `=` that does not start with a blank is an error for sssctl; a line
such as `OUs,DC=x` is read as the option `OUs,DC` (which is what happens to a value broken
over two lines without the leading blank).

Every value reconcile writes goes through `sssd_value`, lists through `sssd_list`, section
names through `sssd_section`.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from reconcilers.base import GENERATED_HEADER, ApplyError, Node, UnsafeValue, one_line
from schemas.common import SecretRef

REALMD_TAGS = "manages-system joined-with-adcli"  # what `realm join` writes: `realm list` reads it
# sssd's responders that Debian's package can start on demand from a socket unit
# (sssd-nss.socket, …, enabled with sssd.service): one also listed in `services` makes its
# socket fail to start (sssd already listens there) and the node `degraded`.
SOCKET_RESPONDERS = ("nss", "pam", "sudo", "ssh", "pac", "autofs")
RECOMMENDED = (("cache_credentials", "true"), ("krb5_store_password_if_offline", "true"),
               ("default_shell", "/bin/bash"))
SECRET_PLACEHOLDER = "<secret: {}>"


# --- the language -------------------------------------------------------------------------------


@dataclass
class Option:
    key: str
    value: str
    line: int


@dataclass
class Section:
    name: str
    line: int
    options: list[Option] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        found = [o.value for o in self.options if o.key == key]
        return found[-1] if found else None


class IniError(ValueError):
    """A line sssd cannot read; `line` is its number."""

    def __init__(self, line: int, message: str):
        self.line = line
        super().__init__(f"line {line}: {message}")


def parse_ini(text: str) -> list[Section]:
    """An sssd.conf → its sections in order, each with its options in order (a repeated
    key stays repeated: the last one is what sssd uses). Raises IniError."""
    sections: list[Section] = []
    last: Option | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0] in " \t" and last is not None:  # a continuation of the previous value
            last.value = f"{last.value} {stripped}".strip()
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                raise IniError(n, f"{stripped!r} is not a [section] header")
            sections.append(Section(stripped[1:-1].strip(), n))
            last = None
            continue
        key, eq, value = stripped.partition("=")
        if not eq or not key.strip():
            raise IniError(n, f"{stripped!r} is neither a [section], an option `key = value` nor a comment")
        if not sections:
            raise IniError(n, f"option {key.strip()!r} comes before any [section]")
        last = Option(key.strip(), value.strip(), n)
        sections[-1].options.append(last)
    return sections


def as_dict(sections: list[Section]) -> dict[str, dict[str, str]]:
    """{section: {key: value}} as sssd uses it: a repeated section or key, the last one."""
    out: dict[str, dict[str, str]] = {}
    for s in sections:
        options = out.setdefault(s.name, {})
        for o in s.options:
            options.pop(o.key, None)
            options[o.key] = o.value
    return out


def split_list(value: str) -> list[str]:
    """An sssd list option: comma-separated, blanks around items ignored."""
    return [item.strip() for item in value.split(",") if item.strip()]


def sssd_value(value: Any) -> str:
    """The value of a `key = value` line of sssd.conf, as it is; refused (UnsafeValue) when
    sssd's INI parser would read it otherwise: a control character or line separator (a
    newline would start another key or a `[section]`), or blanks at either end (dropped;
    a line that starts with a blank continues the previous value)."""
    text = one_line(str(value), "sssd.conf", max_length=4096)
    if text != text.strip():
        raise UnsafeValue(f"sssd.conf: refused to write {text!r}: a value there may not start or end with a blank")
    return text


def sssd_list(items: Iterable[str]) -> str:
    """An sssd list option (`a, b`): no item may be empty or hold the ',' that separates them."""
    words = [sssd_value(item) for item in items]
    if any(not w or "," in w for w in words):
        raise UnsafeValue(f"sssd.conf: refused list items {words!r}: an item may not be empty or hold ','")
    return ", ".join(words)


def sssd_section(name: str) -> str:
    """A `[section]` header of sssd.conf: its name may not hold the brackets around it."""
    text = sssd_value(name)
    if not text or "[" in text or "]" in text:
        raise UnsafeValue(f"sssd.conf: refused section name {text!r}")
    return f"[{text}]"


def sssd_key(key: str) -> str:
    text = sssd_value(key)
    if not text or any(c in text for c in "=[]#; \t"):
        raise UnsafeValue(f"sssd.conf: refused option name {text!r}")
    return text


def bool_word(value: bool) -> str:
    return "true" if value else "false"


# --- a DomainJoin's sssd.conf ----------------------------------------------------------------------


def domain_options(spec: Any, computer: str) -> list[tuple[str, str | SecretRef]]:
    """The options of the join's own `[domain/NAME]` section, in file order: the typed
    fields, what an adcli join needs, realmd's recommended settings, then `options.domain`."""
    extra = dict(spec.options.get("domain", {}))
    out: list[tuple[str, Any]] = [("id_provider", spec.provider)]
    if spec.authProvider:
        out.append(("auth_provider", spec.authProvider))
    if spec.chpassProvider:
        out.append(("chpass_provider", spec.chpassProvider))
    if spec.accessProvider:
        out.append(("access_provider", spec.accessProvider))
    if spec.allowGroups:
        out.append(("simple_allow_groups", sssd_list(g.lower() for g in spec.allowGroups)))
    if spec.allowUsers:
        out.append(("simple_allow_users", sssd_list(spec.allowUsers)))
    if spec.accessFilter is not None:
        out.append((f"{spec.accessProvider}_access_filter", spec.accessFilter))
    if spec.provider == "ad":
        out.append(("ad_domain", spec.domain))
    out.append(("krb5_realm", spec.kerberos_realm()))
    if spec.adServers:
        out.append(("ad_server", sssd_list(spec.adServers)))
    if spec.adBackupServers:
        out.append(("ad_backup_server", sssd_list(spec.adBackupServers)))
    if spec.joins():
        extra.setdefault("realmd_tags", REALMD_TAGS)
        out.append(("realmd_tags", extra.pop("realmd_tags")))
        out.append(("krb5_keytab", "/etc/krb5.keytab"))
        # sssd looks for <HOSTNAME>$ in the keytab unless told: a computerName differing
        # from the host name would otherwise leave sssd without credentials.
        out.append(("ldap_sasl_authid", computer + "$"))
    if spec.idMapping is not None:
        out.append(("ldap_id_mapping", bool_word(spec.idMapping)))
    if spec.fullyQualifiedNames is not None:
        out.append(("use_fully_qualified_names", bool_word(spec.fullyQualifiedNames)))
    home = spec.homeDirectories
    if home.pattern is not None:
        out.append(("fallback_homedir", home.pattern))
    if home.override is not None:
        out.append(("override_homedir", home.override))
    if spec.recommended:
        out += [(k, v) for k, v in RECOMMENDED if k not in extra]
    return out + list(extra.items())


def sssd_sections(spec: Any, computer: str,
                  sockets: frozenset[str] = frozenset()) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Every section of the join's sssd.conf, in file order: [sssd], the service and other
    sections of `options` in their order, the join's own domain section. `sockets`: the
    responders the node starts from their socket units (a node fact, see
    `socket_activated`): left out of `services` (and the line with them when none is left)."""
    own = spec.options.get("sssd", {})
    services = [s for s in split_list(str(own.get("services", "nss, pam"))) if s not in sockets]
    main: list[tuple[str, Any]] = [("config_file_version", own.get("config_file_version", "2"))]
    main += [("services", sssd_list(services))] if services else []
    main += [("domains", spec.section_name())]
    main += [(k, v) for k, v in own.items() if k not in ("config_file_version", "services")]
    out = [("sssd", main)]
    for section, options in spec.options.items():
        if section not in ("sssd", "domain"):
            out.append((section, list(options.items())))
    out.append((f"domain/{spec.section_name()}", domain_options(spec, computer)))
    return out


def render_sssd_conf(name: str, spec: Any, computer: str, secret: Any = None,
                     sockets: frozenset[str] = frozenset()) -> str:
    """The whole sssd.conf. A password option is written as `<secret: file:/path>` unless
    `secret(ref)` gives its value (apply reads it then; plans never see it). `desired`
    renders it without `sockets` (pure); apply writes it for the node's own."""
    v = sssd_value
    lines = [f"# {GENERATED_HEADER}", f"# DomainJoin/{v(name)}: {v(spec.domain)}"
             + (f", computer account {v(computer)}$" if spec.joins() else "")]
    for section, options in sssd_sections(spec, computer, sockets):
        lines += ["", sssd_section(section)]
        for key, value in options:
            if isinstance(value, SecretRef):
                value = secret(value) if secret is not None else SECRET_PLACEHOLDER.format(value.describe())
            lines.append(f"{sssd_key(key)} = {v(value)}")
    return "\n".join(lines) + "\n"


def secret_options(spec: Any) -> list[tuple[str, str, SecretRef]]:
    """(section, key, reference) of every password option of the join."""
    out = []
    for section, options in spec.options.items():
        real = f"domain/{spec.section_name()}" if section == "domain" else section
        out += [(real, key, value) for key, value in options.items() if isinstance(value, SecretRef)]
    return out


def socket_activated(wants: Path) -> frozenset[str]:
    """The responders this node's systemd starts from their sockets: those whose
    sssd-NAME.socket is enabled with sssd (a link in sssd.service.wants). A fact of the
    node, read by observe and apply (desired stays pure); call it only under systemd."""
    return frozenset(r for r in SOCKET_RESPONDERS if (wants / f"sssd-{r}.socket").exists())


def effective_services(conf: dict[str, dict[str, str]], wanted: str | None, sockets: frozenset[str]) -> None:
    """Put what serves the node in [sssd] `services`, as `desired` words it (`wanted`: its
    list, without the node's sockets): the responders the file lists plus those of
    `wanted` the node starts from sockets, so a file apply wrote for this node reads as
    the desired one. A responder both listed and socket-activated is said so (drift)."""
    main = conf.get("sssd")
    if main is None:
        return
    listed = split_list(main.get("services", ""))
    both = sorted(set(listed) & sockets)
    if both:
        main["services"] = f"{', '.join(listed)} (also started from sockets: {', '.join(both)}: those sockets fail)"
        return
    want = split_list(wanted or "")
    served = [r for r in want if r in listed or r in sockets] + [r for r in listed if r not in want]
    if served:
        main["services"] = ", ".join(served)
    else:
        main.pop("services", None)


def normalized(text: str, secrets: dict[tuple[str, str], str] | None = None,
               sockets: frozenset[str] = frozenset(), wanted: str | None = None) -> dict[str, dict[str, str]]:
    """{section: {key: value}} of an sssd.conf for the plan; the values of password options
    (`secrets`: (section, key) → the referenced value, or "" when unreadable) become the
    same token as in the desired rendering when they match, never the value itself.
    `sockets`, `wanted`: see `effective_services`."""
    conf = as_dict(parse_ini(text))
    if "services" in conf.get("sssd", {}):
        conf["sssd"]["services"] = ", ".join(split_list(conf["sssd"]["services"]))
    if sockets:
        effective_services(conf, wanted, sockets)
    for (section, key), real in (secrets or {}).items():
        have = conf.get(section, {}).get(key)
        if have is not None and not have.startswith("<secret:"):
            conf[section][key] = "<secret: in sync>" if real and have == real else "<secret: not the referenced one>"
        elif have is not None:
            conf[section][key] = "<secret: in sync>"
    return conf


def desired_normalized(text: str, spec: Any) -> dict[str, dict[str, str]]:
    conf = as_dict(parse_ini(text))
    if "services" in conf.get("sssd", {}):
        conf["sssd"]["services"] = ", ".join(split_list(conf["sssd"]["services"]))
    for section, key, _ in secret_options(spec):
        if key in conf.get(section, {}):
            conf[section][key] = "<secret: in sync>"
    return conf


# --- the native validator ----------------------------------------------------------------------


def check_sssd_conf(node: Node, path: Path, snippets: Path) -> None:
    """`sssctl config-check` on a candidate sssd.conf (it must be root-owned and 0600)."""
    with tempfile.TemporaryDirectory(prefix="reconcile-sssd-") as empty:
        snippet_dir = snippets if snippets.is_dir() else Path(empty)
        r = node.run(["sssctl", "config-check", "-c", str(path), "-s", str(snippet_dir)], read_only=True, check=False)
    if r.rc != 0:
        raise ApplyError(f"sssctl config-check refuses the sssd.conf: {sssctl_problems(r.stdout + r.stderr)}")


def sssctl_problems(output: str) -> str:
    return " | ".join(line for line in output.strip().splitlines()
                      if line.strip() and not line.startswith(("Issues identified", "Messages generated",
                                                                "Used configuration snippet")))
