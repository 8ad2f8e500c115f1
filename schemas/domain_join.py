"""DomainJoin: Active Directory membership with sssd, home directories and sudo rules.

Every string here ends up in an `adcli` argument, a line of sssd.conf, a PAM line or a
sudoers rule, so each is constrained to what those grammars take without quoting tricks:
group names may carry single spaces (the sudoers file escapes them) but never a newline,
`=`, `(`, `)`, `,`, `%` or `:`.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.common import AbsolutePath, DomainName, GroupName, Manifest, Placement, SecretRef, Strict, UserName

ComputerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,14}$")]
"""A NetBIOS computer name: at most 15 letters, digits and '-' (AD stores it upper-case)."""

OrgUnit = Annotated[str, StringConstraints(pattern=r"^(OU|CN)=[A-Za-z0-9 _-]+(,(OU|CN|DC)=[A-Za-z0-9 _-]+)*$")]

# sssd's fallback_homedir expands %u %U %d %f %l %P %o %h %H and %%; anything else after a
# '%' makes sssd refuse the domain, so it is refused here, at the line that has it.
_HOME_EXPANSIONS = set("uUdflPohH%")


def _home_pattern(value: str) -> str:
    i = 0
    while i < len(value):
        if value[i] == "%":
            if i + 1 >= len(value) or value[i + 1] not in _HOME_EXPANSIONS:
                raise ValueError(f"{value!r}: '%' must be followed by one of u U d f l P o h H % (sssd's fallback_homedir)")
            i += 2
        else:
            i += 1
    if not any(f"%{c}" in value for c in "uUfP"):
        raise ValueError(f"{value!r}: the pattern needs a per-user part (%u, %U, %f or %P), or every user shares one home")
    return value


HomePattern = Annotated[
    str,
    StringConstraints(pattern=r"^/[A-Za-z0-9_./%-]*$"),
    AfterValidator(_home_pattern),
    Field(json_schema_extra={"pattern": r"^/(?=.*%[uUfP])([A-Za-z0-9_./-]|%[uUdflPohH%])*$"}),
]


class HomeDirectories(Strict):
    """Home directories of domain users: where (sssd) and whether pam_mkhomedir creates them."""

    create: bool = Field(True, description="pam_mkhomedir creates the home directory on first login")
    pattern: HomePattern = Field("/home/%u", description="sssd fallback_homedir, e.g. /home/%u or /home/%d/%u")
    skel: AbsolutePath = Field("/etc/skel", description="The folder a new home directory is copied from.")
    umask: Annotated[str, StringConstraints(pattern=r"^0[0-7]{3}$")] = Field(
        "0077", description="The umask a new home directory is made with (0077: private).")


class DomainJoinSpec(Placement):
    """Membership of an Active Directory domain, and who may log in and use sudo."""

    domain: DomainName = Field(description="The AD domain, e.g. corp.example.test.")
    user: UserName = Field("Administrator", description="account allowed to join (and remove) computers")
    password: SecretRef = Field(description="The joining account's password, by reference only ({file: /path} "
                                "or {env: NAME}); read at apply time, given to adcli on stdin.")
    computerName: ComputerName | None = Field(None, description="default: the host name, upper-case, 15 characters")
    ou: OrgUnit | None = Field(None, description="where the computer account is created, e.g. OU=Servers,DC=corp,DC=example,DC=test")
    allowGroups: list[GroupName] = Field(default_factory=list, description="empty: every domain user may log in")
    sudoGroups: list[GroupName] = Field(default_factory=list, description="members may run any command with sudo")
    fullyQualifiedNames: bool = Field(False, description="true: users log in as alice@corp.example.test; "
                                      "false: as alice.")
    homeDirectories: HomeDirectories = Field(default_factory=HomeDirectories, description="Home directories of "
                                             "domain users.")
    accessProvider: Literal["simple", "ad"] = Field(
        "simple",
        description="simple: only members of allowGroups may log in; ad: AD decides (account state, GPO logon rights)",
    )

    @model_validator(mode="after")
    def _access(self) -> "DomainJoinSpec":
        if self.accessProvider == "ad" and self.allowGroups:
            raise ValueError("allowGroups needs accessProvider simple; with accessProvider ad, "
                             "AD's own logon rights (GPO) decide who may log in")
        return self


class DomainJoin(Manifest):
    kind: Literal["DomainJoin"]
    spec: DomainJoinSpec

    def claims(self) -> list[tuple[str, str]]:
        # One domain membership per node: one keytab, one sssd.conf.
        return [("domain-join", "spec.domain")]

    def check(self, tree: object) -> list[tuple[str, str]]:
        problems = []
        # AD group names are case-insensitive: "Domain Admins" and "domain admins" are one.
        for field in ("allowGroups", "sudoGroups"):
            seen: dict[str, int] = {}
            for i, group in enumerate(getattr(self.spec, field)):
                key = group.lower()
                if key in seen:
                    problems.append((f"spec.{field}.{i}",
                                     f"duplicate group {group!r} (AD names ignore case; first at index {seen[key]})"))
                else:
                    seen[key] = i
        return problems
