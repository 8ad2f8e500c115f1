"""DomainJoin: a node as a client of Active Directory (or LDAP + Kerberos) through sssd.

Typed where the reconciler needs meaning: the domain and how the node joins it, access
control, home directories, id mapping, names, sudo rules and /etc/krb5.conf. Every other
sssd option is a validated `key: value` of its section under `options` (one line, no
section header, no blanks at either end; a password such as `ldap_default_authtok` only by
reference). Every string here ends up in an `adcli` argument, a line of sssd.conf or
krb5.conf, a PAM line or a sudoers rule, so each is constrained to what those grammars take.
"""
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.common import (
    AbsolutePath, ComputerName, DomainName, GroupName, HomePattern, Manifest, OrgUnit, Placement, SecretRef, Strict,
    Umask, UserName, normal_path_problem, or_secret, unsafe_character,
)

SSSD_SECTION = r"^[A-Za-z0-9_][A-Za-z0-9_./@:-]{0,127}$"
SSSD_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.,:@+-]{0,127}$"
SssdSection = Annotated[str, StringConstraints(pattern=SSSD_SECTION)]
"""An sssd.conf section: `nss`, `pam`, `domain` (this join's own domain section),
`domain/OTHER`, `certmap/DOMAIN/RULE`, …"""
SssdKey = Annotated[str, StringConstraints(pattern=SSSD_KEY)]


def _sssd_value(value: str) -> str:
    if value != value.strip(" \t"):
        raise ValueError(f"{value!r}: an sssd.conf value may not start or end with a blank (sssd drops them)")
    return value


SssdValue = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_sssd_value)]
SSSD_DOMAIN = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$"
SssdDomainName = Annotated[str, StringConstraints(pattern=SSSD_DOMAIN)]
REALM = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"
Realm = Annotated[str, StringConstraints(pattern=REALM)]
HOST = r"^([A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"
Host = Annotated[str, StringConstraints(pattern=HOST)]
"""A server as sssd and krb5.conf name it: a host name or address, optionally :port."""
KRB5_KEY = r"^[a-z][a-z0-9_]{0,63}$"
Krb5Key = Annotated[str, StringConstraints(pattern=KRB5_KEY)]


def _krb5_value(value: str) -> str:
    if not value or value != value.strip(" \t") or any(c in value for c in "{}"):
        raise ValueError(f"{value!r}: a krb5.conf value is one non-empty word or phrase without braces "
                         "and without blanks at either end")
    return value


Krb5Value = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_krb5_value)]


def is_secret_key(key: str) -> bool:
    """sssd options that hold a password (ldap_default_authtok and its kin): given by
    reference only."""
    return key.endswith("authtok")


# sssd options the typed fields write (domain section), and the field that says each.
TYPED_DOMAIN_KEYS = {
    "id_provider": "spec.provider", "auth_provider": "spec.authProvider", "chpass_provider": "spec.chpassProvider",
    "access_provider": "spec.accessProvider", "simple_allow_groups": "spec.allowGroups",
    "simple_allow_users": "spec.allowUsers", "ad_access_filter": "spec.accessFilter",
    "ldap_access_filter": "spec.accessFilter", "ad_domain": "spec.domain", "krb5_realm": "spec.realm",
    "ad_server": "spec.adServers", "ad_backup_server": "spec.adBackupServers", "ldap_id_mapping": "spec.idMapping",
    "use_fully_qualified_names": "spec.fullyQualifiedNames", "fallback_homedir": "spec.homeDirectories.pattern",
    "override_homedir": "spec.homeDirectories.override",
}
JOIN_KEYS = ("krb5_keytab", "ldap_sasl_authid")  # reconcile sets them for an adcli join

# --- sudo ----------------------------------------------------------------------------------------

_RUN_AS_NAME = r"(ALL|[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(@[A-Za-z0-9][A-Za-z0-9.-]{0,252})?)"
RUN_AS = rf"^{_RUN_AS_NAME}?(:{_RUN_AS_NAME})?$"
RunAs = Annotated[str, StringConstraints(pattern=RUN_AS, min_length=1)]
_WORD = re.compile(r"[^\s\\#()!]+")


def _sudo_command(value: str) -> str:
    found = unsafe_character(value)
    if found is not None:
        raise ValueError(f"holds {found[1]} at character {found[0] + 1}: a sudo command is one line of a rule")
    if value == "ALL":
        return value
    path, _, args = value.partition(" ")
    problem = normal_path_problem(path)
    if problem or not re.fullmatch(r"[A-Za-z0-9_./+-]+", path):
        raise ValueError(f"{value!r}: a sudo command is ALL or an absolute program path (letters, digits, "
                         f"_ . / + -) with its arguments{': ' + problem if problem else ''}")
    if args and not all(_WORD.fullmatch(w) for w in args.split(" ") if w) or "  " in args or args != args.strip():
        raise ValueError(f"{value!r}: arguments are words separated by single blanks, without \\ # ( ) or !")
    return value


SudoCommand = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_sudo_command)]


class SudoRule(Strict):
    """`%group ALL=(runAs) [NOPASSWD:] commands`: who (domain groups and users, named as
    sssd names them: `@domain` is added with fully qualified names), as whom, and what."""

    groups: list[GroupName] = Field(default_factory=list, description="domain groups the rule is for")
    users: list[UserName] = Field(default_factory=list, description="domain users the rule is for")
    runAs: RunAs = Field("ALL:ALL", description="USER[:GROUP] the commands run as, e.g. root, ALL:ALL, :www-data")
    noPassword: bool = Field(False, description="NOPASSWD: no password asked")
    commands: Annotated[list[SudoCommand], Field(min_length=1)] = Field(
        default_factory=lambda: ["ALL"], description="ALL, or absolute program paths with their arguments")

    @model_validator(mode="after")
    def _someone(self) -> "SudoRule":
        if not self.groups and not self.users:
            raise ValueError("a sudo rule needs groups or users")
        return self


# --- krb5.conf -----------------------------------------------------------------------------------


class Krb5(Strict):
    """/etc/krb5.conf, written whole by reconcile when given (the one found there before is
    kept aside and put back when the DomainJoin goes)."""

    kdcs: list[Host] = Field(default_factory=list, description="KDCs of the realm (kdc =), pinned; empty: from DNS")
    adminServer: Host | None = Field(None, description="admin_server of the realm")
    dnsLookupKdc: bool | None = Field(None, description="dns_lookup_kdc; default: true unless kdcs are given")
    dnsLookupRealm: bool = Field(False, description="dns_lookup_realm")
    rdns: bool = Field(False, description="rdns: reverse DNS of server names (false: as AD wants)")
    libdefaults: dict[Krb5Key, Krb5Value] = Field(default_factory=dict, description="further [libdefaults] relations")
    realmOptions: dict[Krb5Key, Krb5Value] = Field(default_factory=dict,
                                                   description="further relations of the realm's own block")


class HomeDirectories(Strict):
    """Home directories of domain users: where (sssd) and whether pam_mkhomedir creates them."""

    create: bool = Field(True, description="pam_mkhomedir creates the home directory on first login")
    pattern: HomePattern | None = Field(
        "/home/%u", description="sssd fallback_homedir, e.g. /home/%u or /home/%u@%d (null: not written)")
    override: HomePattern | None = Field(None, description="sssd override_homedir: replaces what AD says")
    skel: AbsolutePath = Field("/etc/skel", description="The folder a new home directory is copied from.")
    umask: Umask = Field("0077", description="The umask a new home directory is made with (0077: private).")


class DomainJoinSpec(Placement):
    """Membership of an Active Directory (or LDAP + Kerberos) domain through sssd, and who may
    log in and use sudo."""

    domain: DomainName = Field(description="the DNS domain (ad_domain), e.g. corp.example.test")
    provider: Literal["ad", "ldap"] = Field("ad", description="sssd id_provider")
    join: Literal["adcli", "none"] | None = Field(
        None, description="adcli: a computer account in AD (default with provider ad); none: no account "
                          "(default with provider ldap)")
    user: UserName = Field("Administrator", description="account allowed to join (and remove) computers")
    password: SecretRef | None = Field(None, description="the join password (adcli joins)")
    computerName: ComputerName | None = Field(None, description="default: the node's name, upper-case, 15 characters")
    ou: OrgUnit | None = Field(None, description="where the computer account is created, e.g. OU=Servers,DC=corp,DC=example,DC=test")
    sssdDomain: SssdDomainName | None = Field(None, description="the sssd domain (its [domain/NAME] section); "
                                                               "default: the domain")
    realm: Realm | None = Field(None, description="the Kerberos realm (krb5_realm); default: the domain upper-cased")
    adServers: list[Host] = Field(default_factory=list, description="ad_server: domain controllers, pinned "
                                                                    "(the join uses the first)")
    adBackupServers: list[Host] = Field(default_factory=list, description="ad_backup_server")
    authProvider: Literal["ad", "krb5", "ldap", "ipa", "proxy", "none"] | None = Field(
        None, description="sssd auth_provider (null: sssd's default, the id provider)")
    chpassProvider: Literal["ad", "krb5", "ldap", "ipa", "proxy", "none"] | None = Field(
        None, description="sssd chpass_provider (null: sssd's default, the auth provider)")
    accessProvider: Literal["simple", "ad", "ldap", "permit", "deny"] | None = Field(
        "simple",
        description="simple: only members of allowGroups/allowUsers may log in (everyone when both are empty); "
                    "ad/ldap: accessFilter and AD's own logon rights decide; null: not written (sssd's default)",
    )
    allowGroups: list[GroupName] = Field(default_factory=list, description="simple_allow_groups")
    allowUsers: list[UserName] = Field(default_factory=list, description="simple_allow_users")
    accessFilter: SssdValue | None = Field(None, description="ad_access_filter (accessProvider ad) or "
                                                             "ldap_access_filter (ldap), e.g. (memberOf=CN=ops,...)")
    sudoGroups: list[GroupName] = Field(default_factory=list, description="members may run any command with sudo")
    sudo: list[SudoRule] = Field(default_factory=list, description="sudo rules (checked by visudo)")
    fullyQualifiedNames: bool | None = Field(False, description="use_fully_qualified_names: alice@corp.example.test")
    idMapping: bool | None = Field(None, description="ldap_id_mapping (null: sssd's default, true for AD)")
    homeDirectories: HomeDirectories = Field(default_factory=HomeDirectories)
    recommended: bool = Field(
        True, description="write realmd's recommended settings where options do not set them: cache_credentials "
                          "and krb5_store_password_if_offline true, default_shell /bin/bash")
    options: dict[SssdSection, dict[SssdKey, or_secret(SssdValue)]] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="further sssd.conf options per section: sssd, nss, pam, domain (this "
                                          "join's domain), domain/OTHER, …; passwords by reference")
    krb5: Krb5 | None = Field(None, description="/etc/krb5.conf, managed when given")

    def joins(self) -> bool:
        return (self.join or ("adcli" if self.provider == "ad" else "none")) == "adcli"

    def section_name(self) -> str:
        return self.sssdDomain or self.domain

    def kerberos_realm(self) -> str:
        return self.realm or self.domain.upper()

    @model_validator(mode="after")
    def _access(self) -> "DomainJoinSpec":
        if self.accessProvider != "simple" and (self.allowGroups or self.allowUsers):
            raise ValueError("allowGroups and allowUsers need accessProvider simple; with accessProvider ad or ldap, "
                             "accessFilter (and AD's own logon rights) decide who may log in")
        if self.accessFilter is not None and self.accessProvider not in ("ad", "ldap"):
            raise ValueError("accessFilter needs accessProvider ad (ad_access_filter) or ldap (ldap_access_filter)")
        if self.joins() and self.password is None:
            raise ValueError("an adcli join needs password: {file: ...} or {env: ...}")
        if (self.adServers or self.adBackupServers) and self.provider != "ad":
            raise ValueError("adServers need provider ad; give ldap_uri under options.domain for provider ldap")
        return self


class DomainJoin(Manifest):
    kind: Literal["DomainJoin"]
    spec: DomainJoinSpec

    def claims(self) -> list[tuple[str, str]]:
        # One domain membership per node: one keytab, one sssd.conf.
        return [("domain-join", "spec.domain")]

    def check(self, tree: object) -> list[tuple[str, str]]:
        problems = []
        spec = self.spec
        # AD group names are case-insensitive: "Domain Admins" and "domain admins" are one.
        for field in ("allowGroups", "sudoGroups"):
            seen: dict[str, int] = {}
            for i, group in enumerate(getattr(spec, field)):
                key = group.lower()
                if key in seen:
                    problems.append((f"spec.{field}.{i}",
                                     f"duplicate group {group!r} (AD names ignore case; first at index {seen[key]})"))
                else:
                    seen[key] = i
        own = f"domain/{spec.section_name()}"
        for section, options in spec.options.items():
            where = f"spec.options.{section}"
            if section == own:
                problems.append((where, "this join's own domain section: write its options under `domain`"))
                continue
            for key, value in options.items():
                if section in ("domain",) and key in TYPED_DOMAIN_KEYS:
                    problems.append((f"{where}.{key}", f"set by {TYPED_DOMAIN_KEYS[key]}: write it there"))
                elif section == "domain" and key in JOIN_KEYS and spec.joins():
                    problems.append((f"{where}.{key}", "reconcile sets it for the adcli join (the computer's "
                                                       "keytab and principal)"))
                elif section == "sssd" and key == "domains":
                    problems.append((f"{where}.{key}", "the sssd domain is the join's own (spec.sssdDomain)"))
                elif is_secret_key(key) and not isinstance(value, SecretRef):
                    problems.append((f"{where}.{key}", "holds a password: give it by reference, "
                                                       "{file: /etc/reconcile/secrets/NAME} or {env: NAME}, never "
                                                       "inline in git"))
        for i, rule in enumerate(spec.sudo):
            if spec.fullyQualifiedNames is False:
                for j, group in enumerate(rule.groups):
                    if "@" in group:
                        problems.append((f"spec.sudo.{i}.groups.{j}",
                                         f"{group!r} is a fully qualified name, but fullyQualifiedNames is false: "
                                         "sssd names the group without @domain"))
        return problems
