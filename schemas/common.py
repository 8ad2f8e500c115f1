"""The manifest envelope and the validated value types every kind shares.

Every string that can reach a command line, a file name or a line of a generated config
file is one of the constrained types below, so that it is checked here, once, before any
reconciler sees it. Anything that is not plainly safe is refused: no shell metacharacters,
no newlines, no `..` path segments.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

API_VERSION = "reconcile/v1"

# --- names -------------------------------------------------------------------------------

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
"""A DNS label: lower-case letters, digits and '-', at most 63, not starting or ending with '-'."""

LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{0,63}$")]

IfName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")]
"""A Linux interface name: at most 15 characters, no '/', no spaces."""

DomainName = Annotated[
    str,
    StringConstraints(
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$",
        to_lower=True,
        max_length=253,
    ),
]
"""A fully qualified DNS domain such as corp.example.test (lower-cased)."""

Port = Annotated[int, Field(ge=1, le=65535)]
Duration = Annotated[str, StringConstraints(pattern=r"^[0-9]+(ms|s|m|h)$")]
"""A duration as HAProxy and Pacemaker write it: 500ms, 2s, 1m, 1h."""


def duration_ms(value: str) -> int:
    """Milliseconds of a `Duration` string."""
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h)", value)
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[unit]


# --- addresses ---------------------------------------------------------------------------


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ipv4_interface(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. 192.0.2.100/24")
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address with a prefix (a.b.c.d/n)") from None
    return f"{iface.ip}/{iface.network.prefixlen}"


IPv4 = Annotated[str, AfterValidator(_ipv4)]
IPv4Prefix = Annotated[str, AfterValidator(_ipv4_interface)]
"""An address with its prefix length, as `ip addr` writes it: 192.0.2.100/24."""

# --- paths -------------------------------------------------------------------------------

_PATH_CHARS = re.compile(r"^[A-Za-z0-9_./@+-]+$")


def _safe_path(value: str) -> str:
    if not _PATH_CHARS.match(value):
        raise ValueError(f"{value!r}: a path may use only letters, digits and _ . / @ + -")
    if any(part == ".." for part in value.split("/")):
        raise ValueError(f"{value!r}: '..' is not allowed in a path")
    return value


def _absolute_path(value: str) -> str:
    value = _safe_path(value)
    if not value.startswith("/"):
        raise ValueError(f"{value!r}: must be an absolute path")
    return value


SafePath = Annotated[str, AfterValidator(_safe_path)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]

# --- group and user names (Active Directory) -----------------------------------------------

_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._'-]{0,62}[A-Za-z0-9._-]$|^[A-Za-z0-9]$")


def _group_name(value: str) -> str:
    if not _GROUP.match(value) or "  " in value:
        raise ValueError(
            f"{value!r}: a group name may use letters, digits, single spaces and . _ ' - "
            "(no newlines, no ':', '=', '(', ')', ',' or '%')"
        )
    return value


GroupName = Annotated[str, AfterValidator(_group_name)]
UserName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]

# --- secrets -----------------------------------------------------------------------------


class SecretRef(BaseModel):
    """A secret given by reference only: `{file: /abs/path}` or `{env: NAME}`.

    The value is read at apply time and never put in a plan, a log or the status.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: AbsolutePath | None = None
    env: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "SecretRef":
        if (self.file is None) == (self.env is None):
            raise ValueError("a secret reference needs exactly one of 'file' or 'env'")
        return self

    def describe(self) -> str:
        return f"file:{self.file}" if self.file else f"env:{self.env}"


# What a pattern means, for error messages: people should not have to read a regex.
PATTERN_HELP: dict[str, str] = {
    DNS_LABEL: "must be a DNS label: lower-case letters, digits and '-', at most 63, not starting or ending with '-'",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$": "must be an interface name: at most 15 letters, digits, '_', '.', '-'",
    r"^[0-9]+(ms|s|m|h)$": "must be a duration such as 500ms, 2s, 1m or 1h",
}


def pattern_help(pattern: str) -> str | None:
    if pattern in PATTERN_HELP:
        return PATTERN_HELP[pattern]
    if "[a-z0-9-]{0,61}" in pattern and r"\." in pattern:
        return "must be a DNS domain such as corp.example.test (lower-case letters, digits, '-' and dots)"
    return None


def duplicates(values: list, field: str, what: str) -> list[tuple[str, str]]:
    """Problems for repeated values in a list: `field` is a path with `{}` for the index."""
    first: dict = {}
    problems = []
    for i, value in enumerate(values):
        if value in first:
            problems.append((field.format(i), f"duplicate {what} {value!r} (first at index {first[value]})"))
        else:
            first[value] = i
    return problems


# --- the envelope ---

class TreeView(Protocol):
    """Read access to the whole validated tree, for whole-tree checks in schemas."""

    def get(self, kind: str, name: str) -> "Manifest | None": ...

    def of_kind(self, kind: str) -> "list[Manifest]": ...

    def nodes_of(self, manifest: "Manifest") -> frozenset[str]:
        """The nodes a manifest lands on (its placement resolved through its Cluster)."""
        ...

    def node_address(self, node: str) -> str | None:
        """The node's address (with prefix) from the Cluster that lists it, if any."""
        ...




class Strict(BaseModel):
    """Base for every spec model: unknown fields are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


DriftPolicy = Literal["correct", "warn", "ignore", "enforce"]
"""What the agent does when an object is changed outside git: `correct` puts it back (the
default), `warn` reports it and leaves it, `ignore` leaves it and reports it in sync. A change
in git is always applied, whatever the policy. A service unit the node's operator masked, or
disabled although its package enables it, is an operator's hold: reported (pending), not
undone, except under `enforce`, which corrects like `correct` and also unmasks and enables
the units the object needs."""


class Metadata(Strict):
    name: Name
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    drift: DriftPolicy = "correct"


class Placement(Strict):
    """Which nodes a manifest lands on: one of `cluster`, `nodes` or `node`."""

    cluster: Name | None = None
    nodes: list[Name] | None = None
    node: Name | None = None

    @model_validator(mode="after")
    def _one_placement(self) -> "Placement":
        given = [k for k in ("cluster", "nodes", "node") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of cluster, nodes, node (got {', '.join(given)})")
        if self.nodes is not None and (not self.nodes or len(set(self.nodes)) != len(self.nodes)):
            raise ValueError("nodes must be a non-empty list without repeats")
        return self


class Manifest(Strict):
    """The envelope: apiVersion, kind, metadata, spec. Subclasses fix `kind` and `spec`."""

    apiVersion: Literal["reconcile/v1"]
    kind: str
    metadata: Metadata
    spec: Any

    def references(self) -> list[tuple[str, str, str]]:
        """Objects of other kinds this manifest names, as (kind, name, field path).

        The loader reports a reference to an object that is not in the tree as an error at
        that field. `spec.cluster` is checked by the loader for every kind.
        """
        return []

    def check(self, tree: "TreeView") -> list[tuple[str, str]]:
        """Whole-tree checks of this kind, as (field path, message) problems.

        `tree` gives read access to every validated manifest; nothing may run a command.
        """
        return []

    def claims(self) -> list[tuple[str, str]]:
        """Exclusive resources this manifest takes on its nodes, as (key, spec field path).

        Two manifests that claim the same key on a common node conflict (one IP in two
        manifests, one container name twice on a node, one VRRP router id twice on an
        interface). Overridden per kind.
        """
        return []

    def placement(self) -> Placement | None:
        """The placement fields, for kinds whose spec carries them."""
        spec = self.spec
        return spec if isinstance(spec, Placement) else None
