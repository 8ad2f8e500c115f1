"""The manifest envelope and the one set of validated value types every kind uses.

Every string that can reach a command line, a file name or a line of a generated config
file is one of the constrained types below, so that it is checked here, once, before any
reconciler sees it. Anything that is not plainly safe is refused: no shell metacharacters,
no `..` path segments, numbers only within what the tools take.

Two rules hold for every field of every kind, whatever its type says (`Strict` checks them
after each model is validated, so a field added later cannot forget them):
- a string is one line: no control character (newline, CR, NUL, ESC, tab, the other C0 and
  C1 codes, DEL), no Unicode line or paragraph separator, no invisible format character
  (bidirectional overrides, zero-width characters) and no lone surrogate. The one exception
  is `MultiLineText` (a file's content), which is only ever written as a whole file;
- a pattern matches the whole value. pydantic's `pattern=` uses Rust's regex, where `$`
  matches only at the very end; the checks written in Python use `re.fullmatch`, because
  Python's `$` also matches before a final newline.
"""
import ipaddress
import re
import typing
import unicodedata
from typing import Annotated, Any, Callable, Literal, Protocol

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

API_VERSION = "reconcile/v1"

# --- one line ----------------------------------------------------------------------------

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format, surrogates, separators
_NAMED = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL character",
          "\x1b": "an escape character (ESC)", "\x7f": "a DEL character", "\x85": "U+0085 (NEXT LINE)"}


def _describe(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def unsafe_character(value: str) -> tuple[int, str] | None:
    """(index, description) of the first character that may not stand in a one-line
    value, or None when there is none."""
    if value.isascii():
        m = _ASCII_CONTROL.search(value)
        return None if m is None else (m.start(), _describe(m.group()))
    for i, char in enumerate(value):
        code = ord(char)
        if unicodedata.category(char) in _REFUSED_CATEGORIES or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return i, _describe(char)
    return None


class MultiLineText(str):
    """Text that may span lines: a file's content. The only kind of value allowed to hold
    newlines; a reconciler writes it as a whole file, never into a line of another file."""


def _multi_line(value: str) -> MultiLineText:
    return MultiLineText(value)  # pydantic has refused what is not text (lone surrogates) already


FileContent = Annotated[str, StringConstraints(max_length=65536), AfterValidator(_multi_line)]
"""A file's content, up to 64 KiB: the one multi-line type."""


def _unsafe_strings(value: Any, loc: tuple[str | int, ...], errors: list[InitErrorDetails]) -> None:
    """Collect an error for every string below `value` (list items, dict keys and values)
    that is not one line. Nested models are not entered: they checked themselves."""
    if isinstance(value, MultiLineText) or isinstance(value, BaseModel):
        return
    if isinstance(value, str):
        found = unsafe_character(value)
        if found is not None:
            errors.append(InitErrorDetails(
                type=PydanticCustomError(
                    "one_line", "holds {what} at character {at}: a value here is one line of a config file or one "
                    "command argument, so control characters, line separators and invisible format characters "
                    "are refused", {"what": found[1], "at": found[0] + 1}),
                loc=loc, input=value))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _unsafe_strings(item, loc + (i,), errors)
    elif isinstance(value, dict):
        for key, item in value.items():
            _unsafe_strings(key, loc + (key,), errors)
            _unsafe_strings(item, loc + (key,), errors)


def _may_hold_strings(annotation: Any) -> bool:
    """Whether a field of this type can hold a string that is not fixed by the schema (a
    Literal's values are; a nested model checks itself). Unknown types: yes."""
    if annotation in (int, float, bool, type(None)):
        return False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return False
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return False
    if origin is Annotated:
        return _may_hold_strings(typing.get_args(annotation)[0])
    if origin is not None:
        return any(_may_hold_strings(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis)
    return True


class Strict(BaseModel):
    """Base for every model of a manifest: unknown fields are errors, values are not
    coerced, and every string below it is one line unless it is a `MultiLineText`."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    @classmethod
    def _string_fields(cls) -> tuple[tuple[str, str], ...]:
        """(attribute, name in the manifest) of the fields that may hold strings, once per class."""
        cached = cls.__dict__.get("_string_fields_cache")
        if cached is None:
            cached = tuple((name, info.alias or name) for name, info in cls.model_fields.items()
                           if _may_hold_strings(info.annotation))
            type.__setattr__(cls, "_string_fields_cache", cached)
        return cached

    @model_validator(mode="after")
    def _one_line_strings(self) -> "Strict":
        errors: list[InitErrorDetails] = []
        for name, shown in self._string_fields():
            _unsafe_strings(getattr(self, name), (shown,), errors)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


# --- names and words -----------------------------------------------------------------------
# pydantic's `pattern=` is Rust's regex: `^…$` there is the whole value (and the JSON Schema
# editors read says the same). Python checks below use re.fullmatch.

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
"""A DNS label: lower-case letters, digits and '-', at most 63, not starting or ending with '-'."""

NODE_NAME = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
NodeName = Annotated[str, StringConstraints(pattern=NODE_NAME, max_length=253)]
"""A node's host name as Corosync and Pacemaker know it: DNS labels (any case), dotted for a
fully qualified name (node01.example.com, SLES1)."""

LABEL_KEY = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9._-]{0,63}$"
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE)]

IF_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
IfName = Annotated[str, StringConstraints(pattern=IF_NAME)]
"""A Linux interface name: at most 15 characters, no '/', no spaces."""

DOMAIN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
DomainName = Annotated[str, StringConstraints(pattern=DOMAIN, to_lower=True, max_length=253)]
"""A fully qualified DNS domain such as corp.example.test (lower-cased)."""

HOST_NAME = r"^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
HostName = Annotated[str, StringConstraints(pattern=HOST_NAME, to_lower=True)]
"""An HTTP Host to route on: a name, or `*.` and a domain for every name below it."""

URL_PATH = r"^/[A-Za-z0-9._~/%-]*$"
UrlPath = Annotated[str, StringConstraints(pattern=URL_PATH, max_length=256)]

DISTRO_WORD = r"^[a-z0-9][a-z0-9._-]{0,31}$"
DistroWord = Annotated[str, StringConstraints(pattern=DISTRO_WORD)]
"""A distribution, release or architecture name of the LXC image server."""

PROPERTY_NAME = r"^[a-z][a-z0-9-]{0,62}$"
PROPERTY_VALUE = r"^[A-Za-z0-9_.:+-]{1,128}$"
PropertyName = Annotated[str, StringConstraints(pattern=PROPERTY_NAME)]
PropertyValue = Annotated[str, StringConstraints(pattern=PROPERTY_VALUE)]
"""A Pacemaker cluster property and its value."""

AGENT = (r"^(ocf:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+|(systemd|service|lsb|stonith|nagios|upstart)"
         r":[A-Za-z0-9@_.:-]+)$")
Agent = Annotated[str, StringConstraints(pattern=AGENT)]
"""A Pacemaker resource agent: ocf:PROVIDER:TYPE, systemd:UNIT, lsb:SCRIPT or stonith:TYPE."""
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
PARAM_VALUE = r"^[^\x00-\x1f\x7f]{0,1024}$"
ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME)]
ParamValue = Annotated[str, StringConstraints(pattern=PARAM_VALUE)]
"""A resource parameter's value: any one-line text (the CIB is XML, which escapes it)."""

USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[A-Za-z0-9][A-Za-z0-9.-]{0,252})?$"
UserName = Annotated[str, StringConstraints(pattern=USER_NAME)]
COMPUTER_NAME = r"^[A-Za-z0-9][A-Za-z0-9-]{0,14}$"
ComputerName = Annotated[str, StringConstraints(pattern=COMPUTER_NAME)]
"""A NetBIOS computer name: at most 15 letters, digits and '-' (AD stores it upper-case)."""
ORG_UNIT = r"^(OU|CN)=[A-Za-z0-9 _-]+(,(OU|CN|DC)=[A-Za-z0-9 _-]+)*$"
OrgUnit = Annotated[str, StringConstraints(pattern=ORG_UNIT, max_length=1024)]
UMASK = r"^0[0-7]{3}$"
Umask = Annotated[str, StringConstraints(pattern=UMASK)]
ENV_NAME = r"^[A-Z_][A-Z0-9_]{0,127}$"
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]

_GROUP = re.compile(r"([A-Za-z0-9][A-Za-z0-9 ._'-]{0,62}[A-Za-z0-9._-]|[A-Za-z0-9])(@[A-Za-z0-9][A-Za-z0-9.-]{0,252})?")


def _group_name(value: str) -> str:
    if not _GROUP.fullmatch(value) or "  " in value:
        raise ValueError(
            f"{value!r}: a group name may use letters, digits, single spaces and . _ ' -, and one @domain "
            "(no newlines, no ':', '=', '(', ')', ',' or '%')"
        )
    return value


GROUP_PATTERN = r"^(?!.*  )([A-Za-z0-9][A-Za-z0-9 ._'-]{0,62}[A-Za-z0-9._-]|[A-Za-z0-9])(@[A-Za-z0-9][A-Za-z0-9.-]{0,252})?$"
GroupName = Annotated[str, AfterValidator(_group_name), Field(json_schema_extra={"pattern": GROUP_PATTERN})]
"""An Active Directory group, optionally `group@domain` (as sssd names it with fully
qualified names): single spaces allowed (sudoers escapes them), nothing that means
something in sudoers, sssd or PAM."""

_INIT_ARG = re.compile(r"[A-Za-z0-9_./:=@%+,-]{1,256}")


def _init_arg(value: str) -> str:
    if not _INIT_ARG.fullmatch(value):
        raise ValueError(f"{value!r}: an init argument is one word of letters, digits and _ . / : = @ % + , - "
                         "(no spaces, quotes or shell characters: LXC runs init without a shell)")
    return value


InitArg = Annotated[str, AfterValidator(_init_arg),
                    Field(json_schema_extra={"pattern": f"^{_INIT_ARG.pattern}$"})]
"""One argument of a container's init: no spaces, quotes or shell metacharacters (LXC
splits `lxc.init.cmd` on spaces and runs it without a shell)."""

# --- numbers, durations and sizes: bounded by what the tools take ---------------------------

Port = Annotated[int, Field(ge=1, le=65535)]

MAX_DURATION_MS = 2**31 - 1
"""HAProxy's largest timer (`timer overflow … maximum value is 2147483647 ms`, ~24.8 days);
also within Corosync's and Pacemaker's 32-bit millisecond fields and lxc-stop's seconds."""
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
DURATION = r"^[0-9]{1,10}(ms|s|m|h)$"
INTERVAL = r"^[0-9]{1,10}(ms|s|m)$"


def duration_ms(value: str) -> int:
    """Milliseconds of a `Duration` string."""
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h)", value)
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def _bounded_duration(value: str) -> str:
    if duration_ms(value) > MAX_DURATION_MS:
        raise ValueError(f"{value!r} is too long: at most {MAX_DURATION_MS} ms (~24.8 days), the longest timer "
                         "HAProxy, Corosync and Pacemaker take")
    return value


Duration = Annotated[str, StringConstraints(pattern=DURATION), AfterValidator(_bounded_duration)]
"""A duration as HAProxy and Pacemaker write it: 500ms, 2s, 1m, 1h (at most ~24.8 days)."""
PacemakerInterval = Annotated[str, StringConstraints(pattern=INTERVAL), AfterValidator(_bounded_duration)]

PACEMAKER_INFINITY = 1_000_000
Score = Annotated[int, Field(ge=-PACEMAKER_INFINITY, le=PACEMAKER_INFINITY)] | Literal["INFINITY", "-INFINITY"]
"""A Pacemaker score: ±1,000,000 is INFINITY, and Pacemaker has no score beyond it."""

_MEMORY = re.compile(r"([1-9][0-9]{0,12})([KMG]?)")
_MEMORY_UNIT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MAX_MEMORY_BYTES = 2**63 - 1  # the kernel's page counter (memory.max / limit_in_bytes) holds no more


def _memory_size(value: str) -> str:
    m = _MEMORY.fullmatch(value)
    if not m:
        raise ValueError(f"{value!r} is not a memory size: give a whole number with an optional unit "
                         "K, M or G, e.g. 256M or 1G (no decimals, no 'MB')")
    size = int(m.group(1)) * _MEMORY_UNIT[m.group(2)]
    if size < 4 << 20:
        raise ValueError(f"{value!r} is too small for a container: at least 4M")
    if size > MAX_MEMORY_BYTES:
        raise ValueError(f"{value!r} is more than the kernel's memory limit can hold (8 EiB): leave the limit "
                         "out for no limit")
    return value


MemorySize = Annotated[str, AfterValidator(_memory_size), Field(json_schema_extra={"pattern": f"^{_MEMORY.pattern}$"})]
"""A memory limit as LXC and the kernel take it: 64M, 1G, 524288K."""

_CPUSET = re.compile(r"[0-9]{1,3}(-[0-9]{1,3})?(,[0-9]{1,3}(-[0-9]{1,3})?){0,127}")


def _cpu_set(value: str) -> str:
    if not _CPUSET.fullmatch(value):
        raise ValueError(f"{value!r} is not a CPU list: give CPU numbers and ranges such as 0, 0-1 or 0,2-3")
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise ValueError(f"{value!r}: the range {part} runs backwards")
    return value


CpuSet = Annotated[str, AfterValidator(_cpu_set), Field(json_schema_extra={"pattern": f"^{_CPUSET.pattern}$"})]

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


# The same rules as JSON Schema patterns, so that an editor refuses what validate refuses
# (the Python checks stay the authority and give the messages).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
IPV4_PREFIX_PATTERN = rf"^{_OCTET}(\.{_OCTET}){{3}}/((3[0-2]|[12]?[0-9])|{_OCTET}(\.{_OCTET}){{3}})$"
IPv4 = Annotated[str, AfterValidator(_ipv4), Field(json_schema_extra={"pattern": IPV4_PATTERN})]
IPv4Prefix = Annotated[str, AfterValidator(_ipv4_interface), Field(json_schema_extra={"pattern": IPV4_PREFIX_PATTERN})]
"""An address with its prefix length, as `ip addr` writes it: 192.0.2.100/24."""


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def ip_maybe_prefix(value: str) -> str:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address (a.b.c.d[/n] or an IPv6 address[/n])") from None
    return f"{iface.ip}/{iface.network.prefixlen}" if "/" in value else str(iface.ip)


def _ip_prefix(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. 192.0.2.100/24 or 2001:db8::100/64")
    return ip_maybe_prefix(value)


def _ipv6_pattern() -> str:
    """Every form `ipaddress` reads an IPv6 address in: eight groups, or fewer around one
    `::`, the last two groups possibly written as IPv4, a zone after `%`."""
    h, v4 = "[0-9A-Fa-f]{1,4}", IPV4_PATTERN[1:-1]
    alts = [f"(?:{h}:){{7}}{h}", f"(?:{h}:){{6}}{v4}"]
    for width in (0, 2):  # the right of `::` ends in groups, or in an IPv4 address (two groups)
        for left in range(0, 8 - width):
            room = 7 - width - left  # groups the right side may still hold (`::` stands for one at least)
            lhs = f"(?:{h}:){{{left - 1}}}{h}" if left > 1 else (h if left == 1 else "")
            if width:
                rhs = (f"(?:{h}:){{0,{room}}}" if room > 0 else "") + v4
            else:
                rhs = f"(?:{h}(?::{h}){{0,{room - 1}}})?" if room > 0 else ""
            alts.append(f"{lhs}::{rhs}")
    return f"(?:{'|'.join(alts)})(?:%[^%/]+)?"


_IPV6 = _ipv6_pattern()
_V4_PREFIX = IPV4_PREFIX_PATTERN[1:-1]
_V6_PREFIX = rf"{_IPV6}/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])"
IP_ADDRESS_PATTERN = f"^(?:{IPV4_PATTERN[1:-1]}|{_IPV6})$"
IP_PREFIX_PATTERN = f"^(?:{_V4_PREFIX}|{_V6_PREFIX})$"
IP_MAYBE_PREFIX_PATTERN = f"^(?:{_V4_PREFIX}|{IPV4_PATTERN[1:-1]}|{_V6_PREFIX}|{_IPV6})$"
IPAddress = Annotated[str, AfterValidator(_ip), Field(json_schema_extra={"pattern": IP_ADDRESS_PATTERN})]
"""An IPv4 or IPv6 address, kept as Python writes it (2001:db8::10, not 2001:0db8::0010)."""
IPPrefix = Annotated[str, AfterValidator(_ip_prefix), Field(json_schema_extra={"pattern": IP_PREFIX_PATTERN})]
"""An IPv4 or IPv6 address with its prefix length: 192.0.2.100/24, 2001:db8::100/64."""
IPAddressMaybePrefix = Annotated[str, AfterValidator(ip_maybe_prefix),
                                 Field(json_schema_extra={"pattern": IP_MAYBE_PREFIX_PATTERN})]
"""An IPv4 or IPv6 address, with or without its prefix length."""

# --- paths: absolute, in normal form, no '..' ------------------------------------------------

_PATH_CHARS = re.compile(r"[A-Za-z0-9_./@+-]{1,4095}")


def normal_path_problem(value: str) -> str | None:
    """Why an absolute path is not in normal form ('..', '//', '/./', a trailing '/'), or None."""
    if not value.startswith("/"):
        return "must be an absolute path"
    parts = value.split("/")[1:]
    if ".." in parts:
        return "'..' is not allowed in a path"
    if value != "/" and ("" in parts or "." in parts):
        normal = "/" + "/".join(p for p in parts if p not in ("", "."))
        return f"write it in normal form, {normal!r} (no '//', '/./' or trailing '/')"
    return None


def _absolute_path(value: str) -> str:
    if not _PATH_CHARS.fullmatch(value):
        raise ValueError(f"{value!r}: a path may use only letters, digits and _ . / @ + -")
    problem = normal_path_problem(value)
    if problem:
        raise ValueError(f"{value!r}: {problem}")
    return value


# Normal form as a pattern: absolute, no '..' or '.' segment, no '//', no trailing '/'.
ABSOLUTE_PATH_PATTERN = r"^(/|(/(?!\.\.?(/|$))[A-Za-z0-9_.@+-]+)+)$"
AbsolutePath = Annotated[str, AfterValidator(_absolute_path),
                         Field(json_schema_extra={"pattern": ABSOLUTE_PATH_PATTERN})]
"""An absolute path in normal form, of letters, digits and _ . / @ + - only."""


def _file_path(value: str) -> str:
    if value.endswith("/"):
        raise ValueError(f"{value!r}: name a file inside the container, e.g. /www/index.html")
    return _absolute_path(value)


FilePath = Annotated[str, AfterValidator(_file_path),
                     Field(json_schema_extra={"pattern": r"^(/(?!\.\.?(/|$))[A-Za-z0-9_.@+-]+)+$"})]
"""A file inside a container's root file system, as the container sees it."""

# sssd's fallback_homedir expands %u %U %d %f %l %P %o %h %H and %%; anything else after a
# '%' makes sssd refuse the domain, so it is refused here, at the line that has it.
_HOME_EXPANSIONS = set("uUdflPohH%")
HOME_PATTERN = r"^/[A-Za-z0-9_./%@-]*$"


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
    problem = normal_path_problem(value)
    if problem:  # pam_mkhomedir creates what this names, as root: /home/../etc/%u would be /etc/<user>
        raise ValueError(f"{value!r}: {problem}")
    return value


HomePattern = Annotated[str, StringConstraints(pattern=HOME_PATTERN, max_length=4095), AfterValidator(_home_pattern),
                        Field(json_schema_extra={"pattern": r"^(?=.*%[uUfP])(/(?!\.\.?(/|$))([A-Za-z0-9_.-]|%[uUdflPohH%])+)+$"})]
"""Where a domain user's home is (sssd's fallback_homedir), e.g. /home/%u or /home/%d/%u."""

NOT_ECHOED = "(the value is not shown: it may hold a secret)"
"""A validator that refuses what may be an inline secret ends its message with this: the
loader then never echoes the value."""

# --- file modes ---------------------------------------------------------------------------


def _mode(value: str) -> str:
    if not re.fullmatch(r"[0-7]{4}", value):
        raise ValueError(f"{value!r}: a mode is four octal digits in quotes, e.g. \"0755\", \"0750\" or \"1777\"")
    return value


Mode = Annotated[str, AfterValidator(_mode)]
"""File permissions as four octal digits: "0755", "1777"."""


# --- secrets -----------------------------------------------------------------------------


class SecretRef(Strict):
    """A secret given by reference only: `{file: /abs/path}` or `{env: NAME}`.

    The value is read at apply time and never put in a plan, a log or the status.
    """

    model_config = ConfigDict(frozen=True)

    file: AbsolutePath | None = Field(None, description="An absolute path on the node; the secret is the file's "
                                      "content (a final newline is dropped), read at apply time.")
    env: EnvName | None = Field(None, description="The name of an environment variable of the agent holding the "
                                "secret.")

    @model_validator(mode="after")
    def _one_source(self) -> "SecretRef":
        if (self.file is None) == (self.env is None):
            raise ValueError("a secret reference needs exactly one of 'file' or 'env'")
        return self

    def describe(self) -> str:
        return f"file:{self.file}" if self.file else f"env:{self.env}"


def or_secret(value_type: Any) -> Any:
    """A value given inline (of `value_type`) or, being a secret, by reference ({file:} or
    {env:}): one error naming the field for a bad value, not one per alternative."""
    from pydantic import BeforeValidator, TypeAdapter

    adapter = TypeAdapter(value_type)

    def check(value: Any) -> Any:
        if isinstance(value, (dict, SecretRef)):
            return value if isinstance(value, SecretRef) else SecretRef.model_validate(value)
        try:
            return adapter.validate_python(value, strict=True)
        except ValidationError as err:
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())) from None

    return Annotated[str | SecretRef, BeforeValidator(check)]


# What a pattern means, for error messages: people should not have to read a regex.
PATTERN_HELP: dict[str, str] = {
    DNS_LABEL: "must be a DNS label: lower-case letters, digits and '-', at most 63, not starting or ending with '-'",
    NODE_NAME: "must be a host name: letters, digits and '-' in dot-separated labels of at most 63",
    IF_NAME: "must be an interface name: at most 15 letters, digits, '_', '.', '-'",
    DURATION: "must be a duration such as 500ms, 2s, 1m or 1h",
    INTERVAL: "must be an interval such as 500ms, 10s or 1m",
    DOMAIN: "must be a DNS domain such as corp.example.test (lower-case letters, digits, '-' and dots)",
    HOST_NAME: "must be a host name such as www.example.test, or *.example.test for every name below it",
    URL_PATH: "must be a URL path starting with '/', of letters, digits and . _ ~ / % -",
    LABEL_KEY: "must be a label key: letters, digits and . _ / -, at most 63, starting and ending alphanumeric",
    LABEL_VALUE: "must be a label value: letters, digits and . _ -, at most 63",
    DISTRO_WORD: "must be one lower-case word of letters, digits and . _ - (as the image server names it)",
    PROPERTY_NAME: "must be a Pacemaker property name: lower-case letters, digits and '-'",
    PROPERTY_VALUE: "must be one word of letters, digits and _ . : + - (at most 128)",
    AGENT: "must be a resource agent: ocf:PROVIDER:TYPE, systemd:UNIT, lsb:SCRIPT or stonith:TYPE",
    PARAM_NAME: "must be a parameter name: letters, digits, '_' and '-', starting with a letter or '_'",
    PARAM_VALUE: "must be one line of text (no control characters), at most 1024 characters",
    USER_NAME: "must be a user name: letters, digits and . _ -, at most 64, optionally @domain",
    COMPUTER_NAME: "must be a NetBIOS computer name: at most 15 letters, digits and '-'",
    ORG_UNIT: "must be an OU such as OU=Servers,DC=corp,DC=example,DC=test (letters, digits, spaces, _ and -)",
    UMASK: "must be an octal umask such as 0077",
    ENV_NAME: "must be an environment variable name: upper-case letters, digits and '_'",
    HOME_PATTERN: "must be an absolute path of letters, digits, _ . / @ - and % expansions, e.g. /home/%u or /home/%u@%d",
    IPV4_PATTERN: "must be an IPv4 address such as 192.0.2.10",
    IPV4_PREFIX_PATTERN: "must be an IPv4 address with its prefix length, such as 192.0.2.100/24",
    IP_ADDRESS_PATTERN: "must be an IPv4 or IPv6 address such as 192.0.2.10 or 2001:db8::10",
    IP_PREFIX_PATTERN: "must be an IPv4 or IPv6 address with its prefix length, such as 192.0.2.100/24 or "
                       "2001:db8::100/64",
    IP_MAYBE_PREFIX_PATTERN: "must be an IPv4 or IPv6 address, optionally with its prefix length (192.0.2.100/24)",
    ABSOLUTE_PATH_PATTERN: "must be an absolute path in normal form, of letters, digits and _ . / @ + -",
    GROUP_PATTERN: "must be a group name: letters, digits, single spaces and . _ ' -, optionally @domain",
}


def pattern_help(pattern: str) -> str | None:
    return PATTERN_HELP.get(pattern)


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

    def memo(self, build: "Callable[[TreeView], Any]") -> Any:
        """`build(tree)` computed once per tree: an index (by address, port, node, …) that a
        check() looks things up in, instead of scanning every other manifest (quadratic)."""
        ...


DriftPolicy = Literal["correct", "warn", "ignore", "enforce"]
"""What the agent does when an object is changed outside git: `correct` puts it back (the
default), `warn` reports it and leaves it, `ignore` leaves it and reports it in sync. A change
in git is always applied, whatever the policy. A service unit the node's operator masked, or
disabled although its package enables it, is an operator's hold: reported (pending), not
undone, except under `enforce`, which corrects like `correct` and also unmasks and enables
the units the object needs."""


class Metadata(Strict):
    """What the object is called and how the agent treats changes made outside git."""

    name: Name = Field(description="The object's name, unique per kind: a DNS label (the daemons' own ids, "
                                   "such as Pacemaker resource ids and HAProxy proxy names, are made from it).")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, description="Free-form key: value tags for "
                                               "people and tools; reconcile does not act on them.")
    drift: DriftPolicy = Field("correct", description="When the object is changed outside git: correct puts it "
                               "back, warn reports it and leaves it, ignore leaves it and reports it in sync; "
                               "enforce corrects it and also unmasks and enables the service units it needs "
                               "that the node's operator masked or disabled (otherwise a hold, left so).")


EVERY_NODE = "*"
PLACEMENT_MISSING = ("where this manifest lands is not said: give spec.cluster (every node of a Cluster), "
                     "spec.nodes (a list, or [\"*\"] for every node, explicitly) or spec.node")


def _placement_schema(schema: dict[str, Any]) -> None:
    # Exactly one of the three, as validate says (editors refuse a manifest without one).
    schema["oneOf"] = [{"required": [k]} for k in ("cluster", "nodes", "node")]


class Placement(Strict):
    """Which nodes a manifest lands on: exactly one of `cluster`, `nodes` or `node`."""

    model_config = ConfigDict(json_schema_extra=_placement_schema)

    cluster: Name | None = Field(None, description="Every node of this Cluster (by its metadata.name).")
    nodes: list[NodeName | Literal["*"]] | None = Field(
        None, min_length=1, description='These nodes (names from a Cluster), or ["*"]: every node, said explicitly.',
        json_schema_extra={"uniqueItems": True, "if": {"contains": {"const": EVERY_NODE}}, "then": {"maxItems": 1}})
    node: NodeName | None = Field(None, description="This one node.")

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, nodes: list[str] | None) -> list[str] | None:
        if nodes is not None and (not nodes or len(set(nodes)) != len(nodes)):
            raise ValueError("nodes must be a non-empty list without repeats")
        if nodes is not None and EVERY_NODE in nodes and len(nodes) > 1:
            raise ValueError('"*" means every node: give it alone (nodes: ["*"]), not with node names')
        return nodes

    @model_validator(mode="after")
    def _one_placement(self) -> "Placement":
        given = [k for k in ("cluster", "nodes", "node") if getattr(self, k) is not None]
        if not given:
            raise ValueError(PLACEMENT_MISSING)
        if len(given) > 1:
            raise ValueError(f"give only one of cluster, nodes, node (got {', '.join(given)})")
        return self

    @property
    def everywhere(self) -> bool:
        return self.nodes == [EVERY_NODE]


class Manifest(Strict):
    """The envelope: apiVersion, kind, metadata, spec. Subclasses fix `kind` and `spec`."""

    apiVersion: Literal["reconcile/v1"] = Field(description="The manifest format: reconcile/v1.")
    kind: str = Field(description="The kind of object.")
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
