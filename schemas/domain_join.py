"""DomainJoin: Active Directory membership with sssd, home directories and sudo rules."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.common import AbsolutePath, DomainName, GroupName, Manifest, Placement, SecretRef, Strict, UserName

ComputerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,14}$")]
OrgUnit = Annotated[str, StringConstraints(pattern=r"^(OU|CN)=[A-Za-z0-9 _-]+(,(OU|CN|DC)=[A-Za-z0-9 _-]+)*$")]
HomePattern = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./%-]*%[uUd][A-Za-z0-9_./%-]*$")]


class HomeDirectories(Strict):
    create: bool = Field(True, description="pam_mkhomedir creates the home directory on first login")
    pattern: HomePattern = "/home/%u"
    skel: AbsolutePath = "/etc/skel"
    umask: Annotated[str, StringConstraints(pattern=r"^0[0-7]{3}$")] = "0077"


class DomainJoinSpec(Placement):
    domain: DomainName
    user: UserName = "Administrator"
    password: SecretRef
    computerName: ComputerName | None = None
    ou: OrgUnit | None = None
    allowGroups: list[GroupName] = Field(default_factory=list, description="empty: every domain user may log in")
    sudoGroups: list[GroupName] = Field(default_factory=list, description="members may run any command with sudo")
    fullyQualifiedNames: bool = False
    homeDirectories: HomeDirectories = Field(default_factory=HomeDirectories)
    accessProvider: Literal["simple", "ad"] = "simple"


class DomainJoin(Manifest):
    kind: Literal["DomainJoin"]
    spec: DomainJoinSpec

    def claims(self) -> list[tuple[str, str]]:
        # One domain membership per node.
        return [("domain-join", "spec.domain")]
