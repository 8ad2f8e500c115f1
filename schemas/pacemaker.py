"""The Pacemaker vocabulary shared by the Cluster and ClusterResource manifests.

Each model mirrors one element of Pacemaker's CIB (Pacemaker Explained, 2.1) with the
attribute names in camelCase (`first-action` → `firstAction`). Every `id` is optional: left
out, reconcile derives the id Pacemaker's own tools would give (see reconcilers/pacemaker/
cib.py); given, it is kept as it is, so that a CIB imported from a running cluster renders
back with the same ids.

Name/value sets (`instance_attributes`, `meta_attributes`, `utilization`, cluster options,
defaults) are written as a plain mapping in the common case, or as a list of sets when a
set needs its own id, a rule or a score:

    params: {ip: 192.0.2.50, cidr_netmask: "24"}
    meta:
      - id: db-meta-night
        rule: {expressions: [{date: {operation: date_spec, dateSpec: {hours: "0-6"}}}]}
        values: {resource-stickiness: "0"}
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, StringConstraints, Tag, model_validator

from schemas.common import MAX_DURATION_MS, SecretRef, Strict
from schemas.common import ParamValue as ParamValue_

# --- words -------------------------------------------------------------------------------

PACEMAKER_ID = r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$"
PacemakerId = Annotated[str, StringConstraints(pattern=PACEMAKER_ID)]
"""An XML id as Pacemaker takes it: a letter or '_', then letters, digits, '_', '.', '-'."""

ATTRIBUTE = r"^[A-Za-z_#][A-Za-z0-9_.:#-]{0,254}$"
AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE)]
"""A name in a name/value set: a parameter, a meta attribute, a node attribute, an option
(`#uname` and the other node attributes Pacemaker defines start with '#')."""

Value = ParamValue_
"""A value: one line of any text up to 1024 characters (the CIB is XML, which escapes the
rest)."""

INFINITY = ("INFINITY", "+INFINITY", "-INFINITY")
Score = Annotated[int, Field(ge=-1_000_000, le=1_000_000)] | Literal["INFINITY", "+INFINITY", "-INFINITY"]
"""A score: an integer (±1,000,000 is ±INFINITY) or INFINITY / -INFINITY."""

ROLES = ("Started", "Stopped", "Promoted", "Unpromoted", "Master", "Slave")


def _role(value: str) -> str:
    if value not in ROLES:
        raise ValueError(f"unknown role {value!r}: Pacemaker knows Started, Stopped, Promoted, Unpromoted "
                         "(and the older names Master, Slave)")
    return value


Role = Annotated[str, AfterValidator(_role)]
ACTIONS = ("start", "stop", "promote", "demote")


def _action(value: str) -> str:
    if value not in ACTIONS:
        raise ValueError(f"unknown action {value!r}: an order names start, stop, promote or demote")
    return value


Action = Annotated[str, AfterValidator(_action)]

_TIME = re.compile(r"(0|[0-9]{1,10}(\.[0-9]{1,3})?(ms|msec|us|usec|s|sec|m|min|h|hr)?|P(?=[0-9T])([0-9]+[YMWD])*"
                   r"(T([0-9]+[HMS])+)?)")


def _time(value: str) -> str:
    if not _TIME.fullmatch(value):
        raise ValueError(f"{value!r} is not a Pacemaker time: write a number with an optional unit (ms, s, m, min, "
                         "h), e.g. 10s, 20, 1min, or an ISO 8601 duration such as PT30S")
    if interval_ms(value) > MAX_DURATION_MS:
        raise ValueError(f"{value!r} is too long: at most {MAX_DURATION_MS} ms (~24.8 days), Pacemaker's 32-bit "
                         "millisecond timers")
    return value


PcmkTime = Annotated[str, AfterValidator(_time)]
_UNITS_MS = {"": 1000, "s": 1000, "sec": 1000, "ms": 1, "msec": 1, "us": 0.001, "usec": 0.001, "m": 60_000,
             "min": 60_000, "h": 3_600_000, "hr": 3_600_000}
_ISO_MS = {"Y": 31_536_000_000, "M": 2_592_000_000, "W": 604_800_000, "D": 86_400_000}
_ISO_TIME_MS = {"H": 3_600_000, "M": 60_000, "S": 1000}


def interval_ms(value: str) -> float:
    """A Pacemaker time in milliseconds (10s == 10000ms == 10 == PT10S), for telling
    operations apart the way Pacemaker does."""
    m = re.fullmatch(r"([0-9.]+)([a-z]*)", value)
    if m:
        return float(m.group(1)) * _UNITS_MS.get(m.group(2), 1000)
    total = 0.0
    date, _, time_ = value[1:].partition("T")
    for n, unit in re.findall(r"([0-9]+)([YMWD])", date):
        total += int(n) * _ISO_MS[unit]
    for n, unit in re.findall(r"([0-9]+)([HMS])", time_):
        total += int(n) * _ISO_TIME_MS[unit]
    return total
"""An interval or timeout as Pacemaker reads it: 10s, 20 (seconds), 1min, 500ms, PT1M."""

OP_NAME = r"^[a-z][a-z0-9_-]{0,63}$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?([+-][0-9]{2}:?[0-9]{2}|Z)?)?$"
RANGE = r"^[0-9]{1,4}(-[0-9]{1,4})?$"
REF_OR_ID = PacemakerId

# --- name/value sets ---------------------------------------------------------------------


class Expression(Strict):
    """`<expression>`: compare a node attribute (or a resource's parameter or meta attribute)."""

    id: PacemakerId | None = None
    attribute: AttributeName
    operation: Literal["lt", "gt", "lte", "gte", "eq", "ne", "defined", "not_defined"]
    value: Value | None = None
    type: Literal["string", "integer", "number", "version"] | None = None
    valueSource: Literal["literal", "param", "meta"] | None = None

    @model_validator(mode="after")
    def _value(self) -> "Expression":
        if self.operation in ("defined", "not_defined"):
            if self.value is not None:
                raise ValueError(f"operation {self.operation} takes no value")
        elif self.value is None:
            raise ValueError(f"operation {self.operation} needs a value")
        return self


_Range = Annotated[str, StringConstraints(pattern=RANGE)]


class DateSpec(Strict):
    """`<date_spec>`: a recurring time (cron-like ranges such as hours: "9-16")."""

    id: PacemakerId | None = None
    hours: _Range | None = None
    monthdays: _Range | None = None
    weekdays: _Range | None = None
    yeardays: _Range | None = None
    months: _Range | None = None
    weeks: _Range | None = None
    years: _Range | None = None
    weekyears: _Range | None = None
    moon: _Range | None = None


class DurationSpec(Strict):
    """`<duration>` of a date expression with operation in_range."""

    id: PacemakerId | None = None
    years: _Range | None = None
    months: _Range | None = None
    weeks: _Range | None = None
    days: _Range | None = None
    hours: _Range | None = None
    minutes: _Range | None = None
    seconds: _Range | None = None


class DateExpression(Strict):
    id: PacemakerId | None = None
    operation: Literal["gt", "lt", "in_range", "date_spec"]
    start: Annotated[str, StringConstraints(pattern=ISO_DATE)] | None = None
    end: Annotated[str, StringConstraints(pattern=ISO_DATE)] | None = None
    duration: DurationSpec | None = None
    dateSpec: DateSpec | None = None

    @model_validator(mode="after")
    def _shape(self) -> "DateExpression":
        if self.operation == "date_spec" and self.dateSpec is None:
            raise ValueError("operation date_spec needs dateSpec")
        if self.operation == "gt" and self.start is None:
            raise ValueError("operation gt needs start")
        if self.operation == "lt" and self.end is None:
            raise ValueError("operation lt needs end")
        if self.operation == "in_range" and self.start is None and self.end is None:
            raise ValueError("operation in_range needs start, end or both")
        return self


class DateItem(Strict):
    date: DateExpression


class RscExpression(Strict):
    """`<rsc_expression>` (rules of rsc_defaults): resources of an agent."""

    id: PacemakerId | None = None
    class_: Literal["ocf", "lsb", "systemd", "service", "stonith", "heartbeat", "upstart", "nagios"] | None = Field(
        None, alias="class")
    provider: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9@_.-]{1,128}$")] | None = None


class ResourceItem(Strict):
    resource: RscExpression


class OpExpression(Strict):
    """`<op_expression>` (rules of op_defaults): operations of a name and interval."""

    id: PacemakerId | None = None
    name: Annotated[str, StringConstraints(pattern=OP_NAME)]
    interval: PcmkTime | None = None


class OpItem(Strict):
    op: OpExpression


def _expression_kind(v: Any) -> str:
    if isinstance(v, dict):
        return next((f"({k})" for k in ("date", "rule", "resource", "op") if k in v), "(expression)")
    return "(" + {DateItem: "date", RuleItem: "rule", ResourceItem: "resource", OpItem: "op"}.get(type(v), "expression") + ")"


class NestedRule(Strict):
    """A rule inside a rule (one level: what pcs and crmsh write)."""

    id: PacemakerId | None = None
    score: Score | None = None
    booleanOp: Literal["and", "or"] | None = None
    expressions: Annotated[list[Annotated[Union[
        Annotated[Expression, Tag("(expression)")], Annotated[DateItem, Tag("(date)")],
        Annotated[ResourceItem, Tag("(resource)")], Annotated[OpItem, Tag("(op)")]],
        Discriminator(_expression_kind)]], Field(min_length=1)]


class RuleItem(Strict):
    rule: NestedRule


class Rule(Strict):
    """`<rule>`: expressions joined by `booleanOp` (and by default)."""

    id: PacemakerId | None = None
    score: Score | None = None
    scoreAttribute: AttributeName | None = None
    booleanOp: Literal["and", "or"] | None = None
    role: Role | None = None
    expressions: Annotated[list[Annotated[Union[
        Annotated[Expression, Tag("(expression)")], Annotated[DateItem, Tag("(date)")],
        Annotated["RuleItem", Tag("(rule)")], Annotated[ResourceItem, Tag("(resource)")],
        Annotated[OpItem, Tag("(op)")]], Discriminator(_expression_kind)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_score(self) -> "Rule":
        if self.score is not None and self.scoreAttribute is not None:
            raise ValueError("give score or scoreAttribute, not both")
        return self

def _value_or_secret(v: Any) -> str:
    return "(secret)" if isinstance(v, (dict, SecretRef)) else "(value)"


def _mapping_or_sets(v: Any) -> str:
    return "(mapping)" if isinstance(v, dict) else "(sets)"


# Unions are told apart by the value's shape, so an error names one branch (the loader
# leaves the parenthesized branch name out of the field path).
ParamValue = Annotated[Union[Annotated[Value, Tag("(value)")], Annotated[SecretRef, Tag("(secret)")]],
                       Discriminator(_value_or_secret)]


class NVSet(Strict):
    """One name/value set with its own id, rule or score (the long form)."""

    id: PacemakerId | None = None
    values: dict[AttributeName, Value] = Field(default_factory=dict)
    ids: dict[AttributeName, PacemakerId] = Field(
        default_factory=dict, description="ids of single values that differ from SETID-NAME (kept from an import)")
    rule: Rule | None = None
    score: Score | None = None

    @model_validator(mode="after")
    def _known(self) -> "NVSet":
        unknown = [k for k in self.ids if k not in self.values]
        if unknown:
            raise ValueError(f"ids name values that are not in this set: {', '.join(unknown)}")
        return self


class ParamSet(NVSet):
    """A set of resource parameters: a value may be a secret reference."""

    values: dict[AttributeName, ParamValue] = Field(default_factory=dict)  # type: ignore[assignment]


NVSets = Annotated[Union[Annotated[dict[AttributeName, Value], Tag("(mapping)")], Annotated[list[NVSet], Tag("(sets)")]],
                   Discriminator(_mapping_or_sets)]
ParamSets = Annotated[Union[Annotated[dict[AttributeName, ParamValue], Tag("(mapping)")],
                            Annotated[list[ParamSet], Tag("(sets)")]], Discriminator(_mapping_or_sets)]


def set_values(sets: Any) -> dict[str, Any]:
    """Every name → value of a mapping or a list of sets (later sets do not override)."""
    if sets is None:
        return {}
    if isinstance(sets, dict):
        return dict(sets)
    out: dict[str, Any] = {}
    for s in sets:
        for k, v in s.values.items():
            out.setdefault(k, v)
    return out


# --- operations --------------------------------------------------------------------------


class Operation(Strict):
    """`<op>`: an action of the resource agent Pacemaker runs (monitor per role, start, stop,
    promote, demote, notify, migrate_to/from, reload, reload-agent, ...)."""

    id: PacemakerId | None = None
    name: Annotated[str, StringConstraints(pattern=OP_NAME)]
    interval: PcmkTime = "0s"
    timeout: PcmkTime | None = None
    role: Role | None = None
    onFail: Literal["ignore", "block", "stop", "restart", "standby", "fence", "restart-container", "demote",
                    "reset"] | None = None
    startDelay: PcmkTime | None = None
    intervalOrigin: Annotated[str, StringConstraints(pattern=ISO_DATE)] | None = None
    enabled: bool | None = None
    recordPending: bool | None = None
    requires: Literal["nothing", "quorum", "fencing", "unfencing"] | None = None
    description: Value | None = None
    params: NVSets | None = Field(None, description="the op's instance_attributes, e.g. {OCF_CHECK_LEVEL: \"10\"}")
    meta: NVSets | None = None


# --- constraints -------------------------------------------------------------------------


class ResourceSet(Strict):
    """`<resource_set>` of a colocation, order, location or ticket constraint."""

    id: PacemakerId | None = None
    resources: Annotated[list[REF_OR_ID], Field(min_length=1)]
    sequential: bool | None = None
    requireAll: bool | None = None
    ordering: Literal["group", "listed"] | None = None
    action: Action | None = None
    role: Role | None = None
    score: Score | None = None
    kind: Literal["Mandatory", "Optional", "Serialize"] | None = None


class Location(Strict):
    """Where this resource may (not) run: on a node with a score, or by rules."""

    id: PacemakerId | None = None
    node: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")] | None = None
    score: Score | None = None
    rules: list[Rule] | None = None
    role: Role | None = None
    resourceDiscovery: Literal["always", "never", "exclusive"] | None = None

    @model_validator(mode="after")
    def _node_or_rules(self) -> "Location":
        if (self.node is None) == (self.rules is None):
            raise ValueError("give node (with a score) or rules, not both")
        if self.rules is not None and self.score is not None:
            raise ValueError("a location by rules takes the score in each rule")
        return self


class Colocation(Strict):
    """Run this resource where `with` runs (score > 0) or away from it (score < 0)."""

    id: PacemakerId | None = None
    with_: REF_OR_ID = Field(alias="with")
    score: Score = "INFINITY"
    role: Role | None = Field(None, description="this resource's role (rsc-role)")
    withRole: Role | None = Field(None, description="the other resource's role (with-rsc-role), e.g. Promoted")
    nodeAttribute: AttributeName | None = None
    influence: bool | None = None


class Order(Strict):
    """Start (or promote, ...) this resource after `first`."""

    id: PacemakerId | None = None
    first: REF_OR_ID
    firstAction: Action | None = None
    thenAction: Action | None = None
    kind: Literal["Mandatory", "Optional", "Serialize"] | None = None
    score: Score | None = None
    symmetrical: bool | None = None
    requireAll: bool | None = None  # `first` a clone: false = one instance of it is enough


class Constraint(Strict):
    """A constraint of the whole cluster (Cluster spec.constraints): any location,
    colocation, order or ticket constraint, including resource sets and rsc-pattern."""

    type: Literal["location", "colocation", "order", "ticket"]
    id: PacemakerId
    # location / colocation / ticket: the dependent resource; order: see first/then
    resource: REF_OR_ID | None = None
    pattern: Annotated[str, StringConstraints(max_length=255)] | None = None
    node: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")] | None = None
    rules: list[Rule] | None = None
    resourceDiscovery: Literal["always", "never", "exclusive"] | None = None
    role: Role | None = None
    with_: REF_OR_ID | None = Field(None, alias="with")
    withRole: Role | None = None
    nodeAttribute: AttributeName | None = None
    influence: bool | None = None
    first: REF_OR_ID | None = None
    then: REF_OR_ID | None = None
    firstAction: Action | None = None
    thenAction: Action | None = None
    kind: Literal["Mandatory", "Optional", "Serialize"] | None = None
    symmetrical: bool | None = None
    requireAll: bool | None = None
    ticket: Annotated[str, StringConstraints(pattern=PACEMAKER_ID)] | None = None
    lossPolicy: Literal["stop", "demote", "fence", "freeze"] | None = None
    score: Score | None = None
    sets: list[ResourceSet] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Constraint":
        t = self.type
        allowed = {
            "location": {"resource", "pattern", "node", "rules", "resourceDiscovery", "role", "score", "sets"},
            "colocation": {"resource", "with_", "withRole", "role", "nodeAttribute", "influence", "score", "sets"},
            "order": {"first", "then", "firstAction", "thenAction", "kind", "symmetrical", "requireAll", "score",
                      "sets"},
            "ticket": {"resource", "role", "ticket", "lossPolicy", "sets"},
        }[t]
        given = {k for k in type(self).model_fields if k not in ("type", "id") and getattr(self, k) is not None}
        extra = given - allowed
        if extra:
            names = ", ".join(sorted("with" if k == "with_" else k for k in extra))
            raise ValueError(f"a {t} constraint takes no {names}")
        if self.sets is not None:
            single = {"resource", "pattern", "with_", "first", "then"} & given
            if single:
                raise ValueError(f"a constraint with sets names its resources in the sets, not in "
                                 f"{', '.join(sorted('with' if k == 'with_' else k for k in single))}")
            return self
        if t == "location":
            if (self.resource is None) == (self.pattern is None):
                raise ValueError("a location names resource or pattern (or sets)")
            if (self.node is None) == (self.rules is None):
                raise ValueError("a location gives node (with a score) or rules")
        elif t == "colocation" and (self.resource is None or self.with_ is None):
            raise ValueError("a colocation names resource and with (or sets)")
        elif t == "order" and (self.first is None or self.then is None):
            raise ValueError("an order names first and then (or sets)")
        elif t == "ticket" and self.resource is None:
            raise ValueError("a ticket constraint names resource (or sets)")
        if t == "ticket" and self.ticket is None:
            raise ValueError("a ticket constraint names its ticket")
        return self


# --- cluster-wide sections ---------------------------------------------------------------


class Recipient(Strict):
    id: PacemakerId | None = None
    value: Value
    description: Value | None = None
    params: NVSets | None = None
    meta: NVSets | None = None


class AlertSelect(Strict):
    """`<select>`: which events the alert agent gets (all when absent)."""

    nodes: bool = False
    fencing: bool = False
    resources: bool = False
    attributes: list[AttributeName] | None = Field(None, description="node attributes; [] for every attribute")


class Alert(Strict):
    """`<alert>`: an agent Pacemaker runs on cluster events."""

    id: PacemakerId
    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./@+-]{0,4095}$")]
    description: Value | None = None
    params: NVSets | None = None
    meta: NVSets | None = None
    select: AlertSelect | None = None
    recipients: list[Recipient] = Field(default_factory=list)


class FencingLevel(Strict):
    """`<fencing-level>`: which devices fence a target, tried in index order."""

    id: PacemakerId | None = None
    index: Annotated[int, Field(ge=1, le=9)]
    target: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")] | None = None
    targetPattern: Annotated[str, StringConstraints(max_length=255)] | None = None
    targetAttribute: AttributeName | None = None
    targetValue: Value | None = None
    devices: Annotated[list[REF_OR_ID], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_target(self) -> "FencingLevel":
        given = [k for k in ("target", "targetPattern", "targetAttribute") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of target, targetPattern or targetAttribute (with targetValue)")
        if (self.targetAttribute is None) != (self.targetValue is None):
            raise ValueError("targetAttribute and targetValue go together")
        return self


class Tag(Strict):
    id: PacemakerId
    refs: Annotated[list[REF_OR_ID], Field(min_length=1)]


PASSWORD_PARAM = re.compile(r"(?i)(passw(or)?d|passwd|secret|token|api_?key|private_?key|credential)s?")
NOT_A_PASSWORD = re.compile(r"(?i).*(_script|_file|_path|_user|_name|_login)$")


def looks_like_a_password(name: str) -> bool:
    """Whether a parameter name says it holds a password or another secret (passwd,
    snmp_priv_passwd, api_key, client_secret, ...), and not a file or script holding one."""
    return bool(PASSWORD_PARAM.search(name)) and not NOT_A_PASSWORD.fullmatch(name)
