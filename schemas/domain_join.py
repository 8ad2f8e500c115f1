"""DomainJoin: Active Directory membership with sssd, home directories and sudo rules.

Every string here ends up in an `adcli` argument, a line of sssd.conf, a PAM line or a
sudoers rule, so each is constrained to what those grammars take without quoting tricks:
group names may carry single spaces (the sudoers file escapes them) but never a newline,
`=`, `(`, `)`, `,`, `%` or `:`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.common import (
    AbsolutePath, ComputerName, DomainName, GroupName, HomePattern, Manifest, OrgUnit, Placement, SecretRef, Strict,
    Umask, UserName,
)


class HomeDirectories(Strict):
    """Home directories of domain users: where (sssd) and whether pam_mkhomedir creates them."""

    create: bool = Field(True, description="pam_mkhomedir creates the home directory on first login")
    pattern: HomePattern = Field("/home/%u", description="sssd fallback_homedir, e.g. /home/%u or /home/%d/%u")
    skel: AbsolutePath = Field("/etc/skel", description="The folder a new home directory is copied from.")
    umask: Umask = Field("0077", description="The umask a new home directory is made with (0077: private).")


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
