"""`reconcile import domain`: sssd.conf (+ sudoers files, krb5.conf, the PAM line) → a
DomainJoin.

sssd.conf is read as sssd reads it (sssd.parse_ini). The options the DomainJoin has typed
fields for become those fields (providers, domain, realm, servers, access control, names,
home directories, id mapping); every other option of every section is carried under
`options` as written; a password option moves to a 0600 file named by reference. A
default reconcile has (realmd's recommended settings, `use_fully_qualified_names`,
`fallback_homedir`, `access_provider`) is switched off where the file does not say it, so
nothing is added that changes what sssd does; what reconcile does add (its header, the
lines an adcli join needs, `[sssd]` when the file had none) is named in the notes.

Without sssd.conf (a `realm join` script), what `realm join` itself writes is assumed.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from reconcilers.domain import sssd
from reconcilers.domain.krb5 import parse_krb5_conf
from reconcilers.domain.sudoers import parse_rules, sudoers_unescape
from reconcilers.importing import ImportProblem, Imported
from schemas.domain_join import JOIN_KEYS, TYPED_DOMAIN_KEYS, is_secret_key

REALMD_DEFAULTS = {"fullyQualifiedNames": True, "homeDirectories": {"pattern": "/home/%u@%d"},
                   "accessProvider": "ad", "idMapping": True}  # what `realm join` writes for AD
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def import_files(conf: tuple[str, str] | None, placement: dict[str, Any], secrets_dir: Path,
                 sudoers: list[tuple[str, str]] = (), krb5: tuple[str, str] | None = None,  # type: ignore[assignment]
                 pam: tuple[str, str] | None = None, domain: str | None = None, user: str | None = None,
                 name: str = "corp") -> Imported:
    """(source, text) of each file → the DomainJoin that reproduces them."""
    notes: list[str] = []
    secrets: dict[Path, str] = {}
    spec: dict[str, Any] = dict(placement)
    if conf is not None:
        _from_sssd(spec, conf[0], conf[1], secrets_dir, secrets, notes)
    else:
        if not domain:
            raise ImportProblem("no sssd.conf: give the domain (--domain) the node joins")
        spec.update(domain=domain.lower(), **{k: v for k, v in REALMD_DEFAULTS.items()})
        notes.append("no sssd.conf: what `realm join` writes is assumed (fully qualified names, /home/%u@%d, "
                     "access_provider ad, realmd's recommended settings)")
    if user:
        spec["user"] = user
    if spec.get("join", "adcli") == "adcli" and spec.get("provider", "ad") == "ad":
        ref = secrets_dir / f"{name}-join.password"
        spec["password"] = {"file": str(ref)}
        notes.append(f"the join password is read from {ref}: put it there (0600) before apply")
    for source, text in sudoers:
        _from_sudoers(spec, source, text)
    if krb5 is not None:
        spec["krb5"] = _from_krb5(spec, krb5[0], krb5[1], notes)
    if pam is not None:
        _from_pam(spec, pam[0], pam[1], notes)
    else:
        spec.setdefault("homeDirectories", {})["create"] = False
    notes.append("reconcile adds its header comment to each file it writes")
    doc = {"apiVersion": "reconcile/v1", "kind": "DomainJoin", "metadata": {"name": name}, "spec": spec}
    return Imported([doc], secrets, notes)


def import_text(text: str, source: str, placement: dict[str, Any], secrets_dir: Path) -> Imported:
    """The common importer interface: an sssd.conf alone."""
    return import_files((source, text), placement, secrets_dir)


# --- sssd.conf ----------------------------------------------------------------------------------------


def _from_sssd(spec: dict[str, Any], source: str, text: str, secrets_dir: Path, secrets: dict[Path, str],
               notes: list[str]) -> None:
    try:
        sections = sssd.parse_ini(text)
    except sssd.IniError as err:
        raise ImportProblem(f"{source}:{err.line}: {str(err).split(': ', 1)[1]} (sssd refuses it too)") from None
    main = next((s for s in sections if s.name == "sssd"), None)
    listed = sssd.split_list(main.get("domains") or "") if main else []
    domains = [s for s in sections if s.name.startswith("domain/")]
    if len(listed) > 1:
        n = next(o.line for o in main.options if o.key == "domains")  # type: ignore[union-attr]
        raise ImportProblem(f"{source}:{n}: domains lists {len(listed)} sssd domains: one DomainJoin is one domain; "
                            "import each domain's part of the file on its own")
    own = next((s for s in domains if s.name == f"domain/{listed[0]}"), None) if listed else None
    own = own or (domains[0] if domains else None)
    if own is None:
        raise ImportProblem(f"{source}: no [domain/NAME] section: nothing to join")
    if main is None:
        notes.append(f"{source}: no [sssd] section: reconcile adds one (config_file_version = 2, services = nss, "
                     f"pam, domains = {own.name[7:]})")
    elif listed and f"domain/{listed[0]}" != own.name:
        notes.append(f"{source}: domains = {listed[0]} names no section; the domain is [{own.name}]")
    options: dict[str, dict[str, Any]] = {}
    for s in sections:
        if s is own:
            continue
        section = options.setdefault(s.name, {})
        for o in s.options:
            if s is main and o.key == "domains":
                continue
            section[o.key] = _secret(o, s.name, source, secrets_dir, secrets, notes)
    values = {o.key: o for o in own.options}
    domain_name = own.name[len("domain/"):]
    ad_domain = values["ad_domain"].value if "ad_domain" in values else None
    dns = (ad_domain or domain_name).lower()
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", dns):
        realm = values["krb5_realm"].value.lower() if "krb5_realm" in values else ""
        if realm and "." in realm:
            dns = realm
        else:
            raise ImportProblem(f"{source}:{own.line}: [{own.name}]: no DNS domain (ad_domain, or a section or "
                                "krb5_realm named like one)")
    spec["domain"] = dns
    if domain_name != dns:
        spec["sssdDomain"] = domain_name
    provider = values["id_provider"].value if "id_provider" in values else "ad"
    if provider not in ("ad", "ldap"):
        raise ImportProblem(f"{source}:{values['id_provider'].line}: id_provider = {provider}: a DomainJoin is an AD "
                            "or LDAP client (ad, ldap)")
    spec["provider"] = provider
    if "id_provider" not in values:
        notes.append(f"{source}: [{own.name}] has no id_provider: reconcile writes id_provider = ad")
    spec["join"] = "adcli" if provider == "ad" else "none"
    spec["recommended"] = False  # nothing the file does not say
    spec["accessProvider"] = None
    spec["fullyQualifiedNames"] = None
    if "access_provider" in values:  # before the filters that need it
        spec["accessProvider"] = values["access_provider"].value
    home: dict[str, Any] = {"pattern": None}
    domain_options: dict[str, Any] = {}
    for key, o in values.items():
        where = f"{source}:{o.line}"
        if key in ("id_provider",):
            continue
        if key == "ad_domain":
            if provider != "ad":
                domain_options[key] = o.value
            continue
        if key in JOIN_KEYS and spec["join"] == "adcli":
            notes.append(f"{where}: {key} = {o.value}: reconcile writes it for its adcli join "
                         f"({'/etc/krb5.keytab' if key == 'krb5_keytab' else 'COMPUTER$'})")
            if key == "ldap_sasl_authid" and o.value.endswith("$"):
                spec["computerName"] = o.value[:-1].split("@")[0]
            continue
        if key not in TYPED_DOMAIN_KEYS:
            if not re.fullmatch(r"[a-z0-9_]+", key):
                notes.append(f"{where}: {key!r} is kept as sssd reads it, an option of its own (a value broken over "
                             "two lines without a leading blank on the second?); sssctl config-check flags it")
            domain_options[key] = _secret(o, own.name, source, secrets_dir, secrets, notes)
            continue
        _typed(spec, home, key, o.value, where, provider)
    if domain_options:
        options["domain"] = domain_options
    spec["homeDirectories"] = home
    if options:
        spec["options"] = options


def _typed(spec: dict[str, Any], home: dict[str, Any], key: str, value: str, where: str, provider: str) -> None:
    def flag() -> bool:
        if value.lower() not in _BOOL:
            raise ImportProblem(f"{where}: {key} = {value}: not a boolean sssd reads")
        return _BOOL[value.lower()]

    if key in ("auth_provider", "chpass_provider", "access_provider"):
        field = {"auth_provider": "authProvider", "chpass_provider": "chpassProvider",
                 "access_provider": "accessProvider"}[key]
        spec[field] = value
    elif key == "simple_allow_groups":
        spec["allowGroups"] = sssd.split_list(value)
    elif key == "simple_allow_users":
        spec["allowUsers"] = sssd.split_list(value)
    elif key in ("ad_access_filter", "ldap_access_filter"):
        if not key.startswith(spec.get("accessProvider") or "-"):
            raise ImportProblem(f"{where}: {key} needs access_provider = {key.split('_')[0]} in the same section "
                                "(sssd ignores it otherwise)")
        spec["accessFilter"] = value
    elif key == "krb5_realm":
        spec["realm"] = value
    elif key in ("ad_server", "ad_backup_server"):
        spec["adServers" if key == "ad_server" else "adBackupServers"] = sssd.split_list(value)
    elif key == "ldap_id_mapping":
        spec["idMapping"] = flag()
    elif key == "use_fully_qualified_names":
        spec["fullyQualifiedNames"] = flag()
    elif key == "fallback_homedir":
        home["pattern"] = value
    elif key == "override_homedir":
        home["override"] = value


def _secret(o: sssd.Option, section: str, source: str, secrets_dir: Path, secrets: dict[Path, str],
            notes: list[str]) -> Any:
    if not is_secret_key(o.key):
        return o.value
    path = secrets_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', section)}-{o.key}"
    secrets[path] = o.value
    notes.append(f"{source}:{o.line}: {o.key} is a password: moved to {path} (0600), named by reference")
    return {"file": str(path)}


# --- sudoers, krb5.conf, PAM ---------------------------------------------------------------------------


_RULE = re.compile(r"^((?:%?(?:\\.|[^\s\\,=])+)(?:\s*,\s*%?(?:\\.|[^\s\\,=])+)*)\s+ALL\s*=\s*"
                   r"(?:\(([^)]*)\)\s*)?(NOPASSWD:\s*)?(.+)$")


def _from_sudoers(spec: dict[str, Any], source: str, text: str) -> None:
    for n, line in enumerate(text.splitlines(), 1):
        stripped = " ".join(line.split())
        if not parse_rules(stripped):
            continue
        m = _RULE.match(stripped)
        if not m:
            raise ImportProblem(f"{source}:{n}: {stripped!r}: only rules `WHO ALL=(RUNAS) [NOPASSWD:] COMMANDS` are "
                                "imported (no Defaults, aliases or host lists)")
        who = [sudoers_unescape(w.strip()) for w in re.split(r"(?<!\\),", m.group(1))]
        run_as = (m.group(2) or "ALL").strip() or "ALL"
        commands = [re.sub(r"\\(.)", r"\1", c.strip()) for c in re.split(r"(?<!\\),", m.group(4))]
        groups = [w[1:] for w in who if w.startswith("%")]
        users = [w for w in who if not w.startswith("%")]
        if not users and len(groups) == 1 and run_as == "ALL:ALL" and not m.group(3) and commands == ["ALL"]:
            spec.setdefault("sudoGroups", []).append(groups[0])
            continue
        rule: dict[str, Any] = {}
        if groups:
            rule["groups"] = groups
        if users:
            rule["users"] = users
        rule["runAs"] = run_as
        if m.group(3):
            rule["noPassword"] = True
        rule["commands"] = commands
        spec.setdefault("sudo", []).append(rule)


def _from_krb5(spec: dict[str, Any], source: str, text: str, notes: list[str]) -> dict[str, Any]:
    conf = parse_krb5_conf(text)
    extra = sorted(set(conf) - {"libdefaults", "realms", "domain_realm"})
    if extra:
        raise ImportProblem(f"{source}: [{extra[0]}]: reconcile writes krb5.conf for the join's realm only "
                            "(libdefaults, the realm, domain_realm)")
    libdefaults = dict(conf.get("libdefaults", {}))
    realm = libdefaults.pop("default_realm", None) or spec.get("realm") or spec["domain"].upper()
    realms = conf.get("realms", {})
    if set(realms) - {realm}:
        raise ImportProblem(f"{source}: [realms] has {', '.join(sorted(set(realms) - {realm}))} besides {realm}: "
                            "reconcile writes the join's realm only")
    spec.setdefault("realm", realm)
    out: dict[str, Any] = {}
    for key, field in (("dns_lookup_kdc", "dnsLookupKdc"), ("dns_lookup_realm", "dnsLookupRealm"), ("rdns", "rdns")):
        if key in libdefaults:
            out[field] = _BOOL.get(str(libdefaults.pop(key)).lower(), False)
    block = dict(realms.get(realm, {}))
    kdcs = block.pop("kdc", [])
    out["kdcs"] = kdcs if isinstance(kdcs, list) else [kdcs]
    if "admin_server" in block:
        out["adminServer"] = block.pop("admin_server")
    block.pop("default_domain", None)
    if libdefaults:
        out["libdefaults"] = {k: v if isinstance(v, str) else v[-1] for k, v in libdefaults.items()}
    if block:
        out["realmOptions"] = {k: v if isinstance(v, str) else v[-1] for k, v in block.items()}
    notes.append(f"{source}: reconcile writes [domain_realm] for {spec['domain']} and default_domain itself")
    return out


def _from_pam(spec: dict[str, Any], source: str, text: str, notes: list[str]) -> None:
    home = spec.setdefault("homeDirectories", {})
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "session" and words[2] == "pam_mkhomedir.so":
            args = dict(w.split("=", 1) for w in words[3:] if "=" in w)
            home["create"] = True
            if "skel" in args:
                home["skel"] = args["skel"]
            if "umask" in args:
                umask = args["umask"]
                if re.fullmatch(r"0?[0-7]{3}", umask) and len(umask) == 3:
                    notes.append(f"{source}:{n}: umask={umask} is written umask=0{umask} (the same octal value)")
                    umask = "0" + umask
                home["umask"] = umask
            return
    home["create"] = False


# --- the command line --------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """`reconcile import domain [SSSD_CONF] [--sudoers F]… [--krb5 F] [--pam F]`."""
    from controller.importcli import placement_args, resolve, write_imported

    p = argparse.ArgumentParser(prog="reconcile import domain",
                                description="a DomainJoin from sssd.conf, sudoers files, krb5.conf and the PAM line")
    p.add_argument("sssd_conf", nargs="?", type=Path, help="sssd.conf (default with --live: /etc/sssd/sssd.conf)")
    p.add_argument("--sudoers", type=Path, action="append", default=[], help="a sudoers file with the join's rules")
    p.add_argument("--krb5", type=Path, help="krb5.conf, when reconcile should manage it")
    p.add_argument("--pam", type=Path, help="the PAM session file with pam_mkhomedir (common-session)")
    p.add_argument("--domain", help="without sssd.conf: the domain joined (as `realm join DOMAIN`)")
    p.add_argument("--user", help="the account that joins (realm join -U USER)")
    p.add_argument("--name", default="corp", help="the DomainJoin's name (default: corp)")
    placement_args(p)
    args = p.parse_args(argv)
    resolve(args, "domain")

    def read(path: Path | None) -> tuple[str, str] | None:
        return None if path is None else (str(path), path.read_text())

    try:
        imported = import_files(read(args.sssd_conf), args.placement, args.secrets_dir,
                                [read(f) for f in args.sudoers], read(args.krb5), read(args.pam),  # type: ignore[misc]
                                args.domain, args.user, args.name)
    except (ImportProblem, OSError) as err:
        print(f"reconcile import domain: {err}", file=sys.stderr)
        return 1
    return write_imported("domain", [imported], args)
