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
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Discriminator, Field, StringConstraints, Tag, WithJsonSchema, model_validator

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


Role = Annotated[str, AfterValidator(_role), WithJsonSchema({"type": "string", "enum": list(ROLES)})]
ACTIONS = ("start", "stop", "promote", "demote")


def _action(value: str) -> str:
    if value not in ACTIONS:
        raise ValueError(f"unknown action {value!r}: an order names start, stop, promote or demote")
    return value


Action = Annotated[str, AfterValidator(_action), WithJsonSchema({"type": "string", "enum": list(ACTIONS)})]

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

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    attribute: AttributeName = Field(description="The node attribute compared (#uname, #id, #kind, ... or your own)")
    operation: Literal["lt", "gt", "lte", "gte", "eq", "ne", "defined", "not_defined"] = Field(
        description="How: lt, gt, lte, gte, eq, ne, or defined / not_defined (no value)")
    value: Value | None = Field(None, description="What the attribute is compared with")
    type: Literal["string", "integer", "number", "version"] | None = Field(
        None, description="How values compare: string, integer, number or version")
    valueSource: Literal["literal", "param", "meta"] | None = Field(
        None, description="literal (default), or param / meta: value names a parameter or meta attribute of the "
                    "resource whose value is compared")

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

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    hours: _Range | None = Field(None, description="A hours range such as 1-5 (one number, or from-to)")
    monthdays: _Range | None = Field(None, description="A monthdays range such as 1-5 (one number, or from-to)")
    weekdays: _Range | None = Field(None, description="A weekdays range such as 1-5 (one number, or from-to)")
    yeardays: _Range | None = Field(None, description="A yeardays range such as 1-5 (one number, or from-to)")
    months: _Range | None = Field(None, description="A months range such as 1-5 (one number, or from-to)")
    weeks: _Range | None = Field(None, description="A weeks range such as 1-5 (one number, or from-to)")
    years: _Range | None = Field(None, description="A years range such as 1-5 (one number, or from-to)")
    weekyears: _Range | None = Field(None, description="A weekyears range such as 1-5 (one number, or from-to)")
    moon: _Range | None = Field(None, description="A moon range such as 1-5 (one number, or from-to)")


class DurationSpec(Strict):
    """`<duration>` of a date expression with operation in_range."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    years: _Range | None = Field(None, description="How many years")
    months: _Range | None = Field(None, description="How many months")
    weeks: _Range | None = Field(None, description="How many weeks")
    days: _Range | None = Field(None, description="How many days")
    hours: _Range | None = Field(None, description="How many hours")
    minutes: _Range | None = Field(None, description="How many minutes")
    seconds: _Range | None = Field(None, description="How many seconds")


class DateExpression(Strict):
    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    operation: Literal["gt", "lt", "in_range", "date_spec"] = Field(
        description="gt (after start), lt (before end), in_range (start..end or start+duration), date_spec "
                    "(recurring, dateSpec)")
    start: Annotated[str, StringConstraints(pattern=ISO_DATE)] | None = Field(
        None, description="ISO 8601 date and time, e.g. 2024-01-01 or 2024-01-01T09:00:00")
    end: Annotated[str, StringConstraints(pattern=ISO_DATE)] | None = Field(None, description="ISO 8601 date and time")
    duration: DurationSpec | None = Field(None, description="With in_range and start: how long the range lasts")
    dateSpec: DateSpec | None = Field(None, description="With date_spec: the recurring time")

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
    date: DateExpression = Field(description="A date expression (<date_expression>)")


class RscExpression(Strict):
    """`<rsc_expression>` (rules of rsc_defaults): resources of an agent."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    class_: Literal["ocf", "lsb", "systemd", "service", "stonith", "heartbeat", "upstart", "nagios"] | None = Field(
        None, alias="class", description="The agent's class, e.g. ocf")
    provider: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = Field(
        None, description="The agent's provider (ocf), e.g. heartbeat")
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9@_.-]{1,128}$")] | None = Field(
        None, description="The agent's type, e.g. IPaddr2")


class ResourceItem(Strict):
    resource: RscExpression = Field(description="A resource expression (<rsc_expression>), in rsc_defaults rules")


class OpExpression(Strict):
    """`<op_expression>` (rules of op_defaults): operations of a name and interval."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    name: Annotated[str, StringConstraints(pattern=OP_NAME)] = Field(description="The operation name, e.g. monitor")
    interval: PcmkTime | None = Field(None, description="The operation interval, e.g. 10s")


class OpItem(Strict):
    op: OpExpression = Field(description="An operation expression (<op_expression>), in op_defaults rules")


def _expression_kind(v: Any) -> str:
    if isinstance(v, dict):
        return next((f"({k})" for k in ("date", "rule", "resource", "op") if k in v), "(expression)")
    names = {DateItem: "date", RuleItem: "rule", ResourceItem: "resource", OpItem: "op"}
    return "(" + names.get(type(v), "expression") + ")"


class NestedRule(Strict):
    """A rule inside a rule (one level: what pcs and crmsh write)."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    score: Score | None = Field(None, description="The rule's score")
    booleanOp: Literal["and", "or"] | None = Field(
        None, description="How its expressions combine: and (default) or or")
    expressions: Annotated[list[Annotated[Union[
        Annotated[Expression, Tag("(expression)")], Annotated[DateItem, Tag("(date)")],
        Annotated[ResourceItem, Tag("(resource)")], Annotated[OpItem, Tag("(op)")]],
        Discriminator(_expression_kind)]], Field(min_length=1)] = Field(
        description="Its expressions (attribute, date, resource, op)")


class RuleItem(Strict):
    rule: NestedRule = Field(description="A rule inside this rule (one level)")


class PacemakerRule(Strict):
    """`<rule>`: expressions joined by `booleanOp` (and by default)."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    score: Score | None = Field(None, description="The score the rule adds where it matches (locations)")
    scoreAttribute: AttributeName | None = Field(None, description="Take the score from this node attribute instead")
    booleanOp: Literal["and", "or"] | None = Field(
        None, description="How its expressions combine: and (default) or or")
    role: Role | None = Field(None, description="Only for this role of the resource (locations)")
    expressions: Annotated[list[Annotated[Union[
        Annotated[Expression, Tag("(expression)")], Annotated[DateItem, Tag("(date)")],
        Annotated["RuleItem", Tag("(rule)")], Annotated[ResourceItem, Tag("(resource)")],
        Annotated[OpItem, Tag("(op)")]], Discriminator(_expression_kind)]], Field(min_length=1)] = Field(
        description="Its expressions: {attribute, operation, value}, {date: ...}, {rule: ...}, {resource: ...}, "
                    "{op: ...}")

    @model_validator(mode="after")
    def _one_score(self) -> "PacemakerRule":
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

    id: PacemakerId | None = Field(
        None, description="The set's id; default: OWNER-instance_attributes, OWNER-meta_attributes, ...")
    values: dict[AttributeName, Value] = Field(default_factory=dict, description="Name → value")
    ids: dict[AttributeName, PacemakerId] = Field(
        default_factory=dict, description="ids of single values that differ from SETID-NAME (kept from an import)")
    rule: PacemakerRule | None = Field(None, description="The set applies only where (or when) this rule matches")
    score: Score | None = Field(None, description="Order among sets (the highest score's value wins)")

    @model_validator(mode="after")
    def _known(self) -> "NVSet":
        unknown = [k for k in self.ids if k not in self.values]
        if unknown:
            raise ValueError(f"ids name values that are not in this set: {', '.join(unknown)}")
        return self


class ParamSet(NVSet):
    """A set of resource parameters: a value may be a secret reference."""

    values: dict[AttributeName, ParamValue] = Field(default_factory=dict)  # type: ignore[assignment]


NVSets = Annotated[Union[Annotated[dict[AttributeName, Value], Tag("(mapping)")],
                         Annotated[list[NVSet], Tag("(sets)")]],
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

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    name: Annotated[str, StringConstraints(pattern=OP_NAME)] = Field(
        description="The agent action: monitor, start, stop, promote, demote, notify, migrate_to, reload, ...")
    interval: PcmkTime = Field("0s", description="How often it recurs (monitor); 0 for one-off actions")
    timeout: PcmkTime | None = Field(
        None, description="How long Pacemaker waits for it (default: op_defaults, then 20s)")
    role: Role | None = Field(
        None, description="Only for instances in this role: Promoted, Unpromoted (a monitor per role)")
    onFail: Literal["ignore", "block", "stop", "restart", "standby", "fence", "restart-container", "demote",
                    "reset"] | None = Field(
        None, description="What a failure does: restart (default), ignore, block, stop, standby, fence, demote, ...")
    startDelay: PcmkTime | None = Field(None, description="Wait this long before the first run")
    intervalOrigin: Annotated[str, StringConstraints(pattern=ISO_DATE)] | None = Field(
        None, description="Schedule a recurring op from this ISO 8601 time")
    enabled: bool | None = Field(None, description="false: keep the op defined but do not run it")
    recordPending: bool | None = Field(None, description="Record the op in the CIB while it runs")
    requires: Literal["nothing", "quorum", "fencing", "unfencing"] | None = Field(
        None, description="What must hold before it runs: nothing, quorum, fencing, unfencing")
    description: Value | None = Field(None, description="Free text")
    params: NVSets | None = Field(None, description="the op's instance_attributes, e.g. {OCF_CHECK_LEVEL: \"10\"}")
    meta: NVSets | None = Field(None, description="The op's meta_attributes")


# --- constraints -------------------------------------------------------------------------


class ResourceSet(Strict):
    """`<resource_set>` of a colocation, order, location or ticket constraint."""

    id: PacemakerId | None = Field(None, description="The set's id; default: CONSTRAINT-set, -set-1, ...")
    resources: Annotated[list[REF_OR_ID], Field(min_length=1)] = Field(
        description="The resources in the set (names or clone ids)")
    sequential: bool | None = Field(
        None, description="Whether the members depend on each other in order (default true)")
    requireAll: bool | None = Field(None, description="false: one member of the set suffices for the next set")
    ordering: Literal["group", "listed"] | None = Field(None, description="group or listed (ordering sets)")
    action: Action | None = Field(None, description="The action of every member: start, stop, promote, demote")
    role: Role | None = Field(None, description="The role of every member: Started, Promoted, Unpromoted, ...")
    score: Score | None = Field(None, description="The set's score")
    kind: Literal["Mandatory", "Optional", "Serialize"] | None = Field(
        None, description="Mandatory, Optional or Serialize (order sets)")


class Location(Strict):
    """Where this resource may (not) run: on a node with a score, or by rules."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    node: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")] | None = Field(
        None, description="The node it prefers (positive score) or avoids (negative)")
    score: Score | None = Field(
        None, description="How much: INFINITY pins it, -INFINITY bans it, a number weighs (default INFINITY)")
    rules: list[PacemakerRule] | None = Field(
        None, description="Rules over node attributes and dates instead of one node (each with its score)")
    role: Role | None = Field(None, description="Only for this role (e.g. Promoted)")
    resourceDiscovery: Literal["always", "never", "exclusive"] | None = Field(
        None, description="always, never or exclusive: where Pacemaker probes for it")

    @model_validator(mode="after")
    def _node_or_rules(self) -> "Location":
        if (self.node is None) == (self.rules is None):
            raise ValueError("give node (with a score) or rules, not both")
        if self.rules is not None and self.score is not None:
            raise ValueError("a location by rules takes the score in each rule")
        return self


class Colocation(Strict):
    """Run this resource where `with` runs (score > 0) or away from it (score < 0)."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    with_: REF_OR_ID = Field(alias="with", description="The other resource (name or clone id)")
    score: Score = Field("INFINITY", description="INFINITY: always together; -INFINITY: never; a number: a preference")
    role: Role | None = Field(None, description="this resource's role (rsc-role)")
    withRole: Role | None = Field(None, description="the other resource's role (with-rsc-role), e.g. Promoted")
    nodeAttribute: AttributeName | None = Field(
        None, description="Colocate by this node attribute instead of the node (#uname)")
    influence: bool | None = Field(
        None, description="Whether this resource's preferences may move `with` (default true)")


class Order(Strict):
    """Start (or promote, ...) this resource after `first`."""

    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    first: REF_OR_ID = Field(description="What comes first (name or clone id)")
    firstAction: Action | None = Field(None, description="Its action: start (default), stop, promote, demote")
    thenAction: Action | None = Field(
        None, description="This resource's action: start (default), stop, promote, demote")
    kind: Literal["Mandatory", "Optional", "Serialize"] | None = Field(
        None, description="Mandatory (default), Optional or Serialize")
    score: Score | None = Field(None, description="Older form of kind (INFINITY: Mandatory, 0: Optional)")
    symmetrical: bool | None = Field(None, description="Whether the reverse order applies to stopping (default true)")
    requireAll: bool | None = Field(None, description="first a clone: false means one of its instances is enough")


class Constraint(Strict):
    """A constraint of the whole cluster (Cluster spec.constraints): any location,
    colocation, order or ticket constraint, including resource sets and rsc-pattern."""

    type: Literal["location", "colocation", "order", "ticket"] = Field(
        description="location, colocation, order or ticket")
    id: PacemakerId = Field(description="The constraint's id")
    # location / colocation / ticket: the dependent resource; order: see first/then
    resource: REF_OR_ID | None = Field(None, description="The dependent resource (location, colocation, ticket)")
    pattern: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        None, description="Location: every resource whose id matches this regular expression")
    node: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")] | None = Field(
        None, description="Location: the node")
    rules: list[PacemakerRule] | None = Field(None, description="Location: rules instead of a node")
    resourceDiscovery: Literal["always", "never", "exclusive"] | None = Field(
        None, description="Location: always, never or exclusive")
    role: Role | None = Field(None, description="The dependent resource's role")
    with_: REF_OR_ID | None = Field(None, alias="with", description="Colocation: the resource it runs with")
    withRole: Role | None = Field(None, description="Colocation: the role of `with`, e.g. Promoted")
    nodeAttribute: AttributeName | None = Field(
        None, description="Colocation: by this node attribute instead of the node")
    influence: bool | None = Field(None, description="Colocation: whether the dependent's preferences move `with`")
    first: REF_OR_ID | None = Field(None, description="Order: what comes first")
    then: REF_OR_ID | None = Field(None, description="Order: what comes next")
    firstAction: Action | None = Field(None, description="Order: the first action (start, stop, promote, demote)")
    thenAction: Action | None = Field(None, description="Order: the next action")
    kind: Literal["Mandatory", "Optional", "Serialize"] | None = Field(
        None, description="Order: Mandatory, Optional or Serialize")
    symmetrical: bool | None = Field(None, description="Order: whether the reverse applies to stopping")
    requireAll: bool | None = Field(None, description="Order: first a clone: false means one instance is enough")
    ticket: Annotated[str, StringConstraints(pattern=PACEMAKER_ID)] | None = Field(
        None, description="Ticket: the ticket's name")
    lossPolicy: Literal["stop", "demote", "fence", "freeze"] | None = Field(
        None, description="Ticket: what losing it does: stop, demote, fence, freeze")
    score: Score | None = Field(None, description="The score (location, colocation, order)")
    sets: list[ResourceSet] | None = Field(None, description="Resource sets instead of single resources")

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
    id: PacemakerId | None = Field(
        None, description="The element's id; default: the id pcs would give (kept as written when given)")
    value: Value = Field(description="Where the agent sends the alert (a file, an address: the agent decides)")
    description: Value | None = Field(None, description="Free text")
    params: NVSets | None = Field(None, description="The recipient's instance_attributes")
    meta: NVSets | None = Field(None, description="The recipient's meta_attributes (timeout, timestamp-format)")


class AlertSelect(Strict):
    """`<select>`: which events the alert agent gets (all when absent)."""

    nodes: bool = Field(False, description="Node events")
    fencing: bool = Field(False, description="Fencing events")
    resources: bool = Field(False, description="Resource events")
    attributes: list[AttributeName] | None = Field(None, description="node attributes; [] for every attribute")


class Alert(Strict):
    """`<alert>`: an agent Pacemaker runs on cluster events."""

    id: PacemakerId = Field(description="The alert's id")
    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./@+-]{0,4095}$")] = Field(
        description="The alert agent (an executable), e.g. /usr/share/pacemaker/alerts/alert_file.sh.sample")
    description: Value | None = Field(None, description="Free text")
    params: NVSets | None = Field(None, description="The agent's instance_attributes")
    meta: NVSets | None = Field(None, description="The alert's meta_attributes (timeout, timestamp-format)")
    select: AlertSelect | None = Field(None, description="Which events (all when absent)")
    recipients: list[Recipient] = Field(default_factory=list, description="Where it sends them")


class FencingLevel(Strict):
    """`<fencing-level>`: which devices fence a target, tried in index order."""

    id: PacemakerId | None = Field(None, description="The level's id; default: fl-TARGET-INDEX")
    index: Annotated[int, Field(ge=1, le=9)] = Field(description="The level (1-9): lower levels are tried first")
    target: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")] | None = Field(
        None, description="The node this level fences")
    targetPattern: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        None, description="Nodes whose name matches this regular expression")
    targetAttribute: AttributeName | None = Field(None, description="Nodes with this attribute (and targetValue)")
    targetValue: Value | None = Field(None, description="The value of targetAttribute")
    devices: Annotated[list[REF_OR_ID], Field(min_length=1)] = Field(
        description="The fencing devices (stonith ClusterResources), all used at this level")

    @model_validator(mode="after")
    def _one_target(self) -> "FencingLevel":
        given = [k for k in ("target", "targetPattern", "targetAttribute") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of target, targetPattern or targetAttribute (with targetValue)")
        if (self.targetAttribute is None) != (self.targetValue is None):
            raise ValueError("targetAttribute and targetValue go together")
        return self


class Tag(Strict):
    id: PacemakerId = Field(description="The tag's id")
    refs: Annotated[list[REF_OR_ID], Field(min_length=1)] = Field(
        description="The resources (or constraints) it names")


PASSWORD_PARAM = re.compile(r"(?i)(passw(or)?d|passwd|secret|token|api_?key|private_?key|credential)s?")
NOT_A_PASSWORD = re.compile(r"(?i).*(_script|_file|_path|_user|_name|_login)$")


def _any_case(pattern: str) -> str:
    """A regular expression without (?i) for editors (JSON Schema patterns are ECMA 262)."""
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in pattern)


PASSWORD_PARAM_SCHEMA = {"patternProperties": {
    "^(?!.*" + _any_case("(_script|_file|_path|_user|_name|_login)") + "$).*" + _any_case(
        "(passw(or)?d|passwd|secret|token|api_?key|private_?key|credential)"): {"type": "object"}}}
"""For editors: a parameter named like a password is a secret reference (an object)."""


def looks_like_a_password(name: str) -> bool:
    """Whether a parameter name says it holds a password or another secret (passwd,
    snmp_priv_passwd, api_key, client_secret, ...), and not a file or script holding one."""
    return bool(PASSWORD_PARAM.search(name)) and not NOT_A_PASSWORD.fullmatch(name)
