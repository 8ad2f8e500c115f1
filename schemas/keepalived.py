"""keepalived's language as manifests: the pieces VirtualIP, Keepalived and VirtualServer share,
and the `Keepalived` kind (what one keepalived daemon carries besides its VRRP instances).

reconcile types what it must understand — names and references, addresses, the programs
keepalived runs, secrets — and carries every other keepalived directive as a verbatim
`Line` (one statement, checked here, then by `keepalived -t` before anything is installed)
or a `Block` of them. So any keepalived.conf can be written down, and `reconcile import
keepalived` writes these manifests from a real file.

The programs keepalived runs (`vrrp_script`, notify scripts, MISC_CHECK, start-up and
shut-down scripts, FIFO readers) are argv lists (`Argv`), never a shell line, and run as a
named user; a node runs them only if its policy allows it (reconcilers/policy.py, section
`keepalived`, capabilities in `CAPABILITIES`).
Scripts shipped from git are `files` installed below MANAGED_SCRIPTS with their mode and
owner; a file outside that folder is refused.
"""
import ipaddress
import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, model_validator

from schemas.common import PATTERN_HELP, AbsolutePath, FileContent, IfName, Manifest, Metadata, Placement, SecretRef, Strict, UserName

MANAGED_SCRIPTS = "/etc/keepalived/reconcile"
"""The folder reconcile owns for scripts shipped from git (nothing else is written there)."""

KEEPALIVED_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"
KeepalivedName = Annotated[str, StringConstraints(pattern=KEEPALIVED_NAME)]
PATTERN_HELP[KEEPALIVED_NAME] = "must be a keepalived name: letters, digits and _ . - (at most 63, not starting " \
                                "with . or -)"
"""A name as keepalived configurations use them (`VI_1`, `chk_haproxy`, `lb-vips`): letters,
digits, '_', '.', '-', at most 63, not starting with '.' or '-'."""

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "ash"})
_PROGRAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_WORD_BAD = re.compile(r"[\"\\$]")
_COMMENT_OR_BRACE = re.compile(r"[{}#!]")


# --- words and lines ---------------------------------------------------------------------


def _arg_word(value: str) -> str:
    if _WORD_BAD.search(value):
        raise ValueError(f"{value!r}: a script argument may not hold '\"', '\\' or '$' (keepalived reads them "
                         "as quoting, escapes and definitions)")
    if "'" in value:
        raise ValueError(f"{value!r}: a script argument may not hold a single quote (keepalived groups script "
                         "arguments with single quotes)")
    if len(value) > 255:
        raise ValueError("a script argument is at most 255 characters")
    return value


ARG_WORD_PATTERN = r"^[^\"\\$'\x00-\x1f\x7f]{1,255}$"
ArgWord = Annotated[str, AfterValidator(_arg_word), Field(json_schema_extra={"pattern": ARG_WORD_PATTERN})]
PATTERN_HELP[ARG_WORD_PATTERN] = "must be one argument: no quote, '\\', '$' or control character, at most 255"


def _not_a_shell_line(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError("a command is an argv list, e.g. [/usr/bin/pgrep, -x, haproxy], never a shell line: "
                         "keepalived runs it without a shell (ship a script file for pipes and redirections)")
    return value


def _argv(value: list[str]) -> list[str]:
    program = value[0]
    if not program.startswith("/"):
        if not _PROGRAM_NAME.fullmatch(program):
            raise ValueError(f"{program!r}: the program is an absolute path or a plain program name found in "
                             "PATH (no spaces: give the arguments as further list items)")
    elif posixpath.normpath(program) != program or "//" in program:
        raise ValueError(f"{program!r}: the program's path must be absolute and normal (no '..', '//', '/./')")
    name = posixpath.basename(program)
    if name in SHELLS and any(a.startswith("-") and "c" in a.lstrip("-") for a in value[1:] if a[:2] != "--"):
        raise ValueError(f"{name} -c runs a shell line, which reconcile refuses: ship the script as a file "
                         f"(spec.files of a Keepalived manifest) and run that")
    return value


Argv = Annotated[
    list[ArgWord],
    BeforeValidator(_not_a_shell_line),
    Field(min_length=1, max_length=64),
    AfterValidator(_argv),
]
"""A program keepalived runs and its arguments: a list, never a shell line."""

# Keywords a verbatim line may never carry: they run programs or read files (typed fields
# check those), they hold secrets (references only), or they change how keepalived reads
# the rest of the file.
RUNS_PROGRAMS = frozenset({
    "script", "misc_path", "quorum_up", "quorum_down", "notify", "notify_up", "notify_down", "notify_master",
    "notify_backup", "notify_fault", "notify_stop", "notify_deleted", "notify_master_rx_lower_pri",
    "startup_script", "shutdown_script", "notify_fifo_script", "vrrp_notify_fifo_script", "lvs_notify_fifo_script",
})
SECRET_KEYWORDS = frozenset({"auth_pass", "password"})

# What the node's policy (/etc/reconcile/policy.yaml, `keepalived: {allow: [...]}`) must allow
# before keepalived on that node does it: never the manifest's decision.
CAPABILITIES = {
    "scripts": "a program keepalived runs (vrrp_script, MISC_CHECK, a FIFO reader, a start-up or shut-down script)",
    "notify": "a notify script (notify_*, notify_up/down, quorum_up/down)",
    "include": "another configuration file keepalived reads (include)",
    "files": "a file keepalived writes, truncates or removes (reload_file, reload_time_file, config_save_dir, "
             "tmp_config_directory, a track file's init_file … overwrite)",
}
WRITES_FILES = frozenset({"reload_file", "reload_time_file", "config_save_dir", "tmp_config_directory"})
"""Directives that make keepalived write, truncate or remove a file of the manifest's choosing."""
CONTROL_KEYWORDS = frozenset({"include", "includer", "includem", "includew", "includeb", "includea"})


def line_problem(words: list[str]) -> str | None:
    """Why a verbatim line may not be carried, or None."""
    keyword = words[0]
    if keyword in RUNS_PROGRAMS or keyword.endswith("_script") and keyword != "track_script":
        return (f"{keyword!r} runs a program: write it as a typed field (an argv list, checked and allowed by "
                "the node's policy), not as a verbatim line")
    if keyword in SECRET_KEYWORDS:
        return f"{keyword!r} holds a secret: give it by reference in its typed field ({{file: …}} or {{env: …}})"
    if keyword in CONTROL_KEYWORDS:
        return f"{keyword!r} reads other files: use spec.includes of a Keepalived manifest"
    if keyword[0] in "@~$":
        return f"{keyword[:1]!r} at the start of a line is keepalived's conditional, sequence or definition syntax"
    return None


def _line(value: str) -> str:
    from reconcilers.keepalived.conf import SyntaxProblem, split_line

    if len(value) > 900:
        raise ValueError("a line is at most 900 characters")
    stripped = value.strip()
    if not stripped:
        raise ValueError("an empty line")
    if stripped[0] in "#!":
        raise ValueError("a comment is not a directive")
    try:
        words = split_line(value)
    except SyntaxProblem as err:
        raise ValueError(str(err)) from None
    if not words:
        raise ValueError("a comment is not a directive")
    rest = value
    for quote in re.findall(r"\"[^\"]*\"|'[^']*'", value):
        rest = rest.replace(quote, "")
    if _COMMENT_OR_BRACE.search(rest):
        raise ValueError(f"{value!r}: '{{', '}}', '#' and '!' outside quotes would open or close a block or start "
                         "a comment: one line is one directive")
    if "$" in value or "\\" in value:
        raise ValueError(f"{value!r}: '$' and '\\' are keepalived's definition and escape syntax")
    why = line_problem(words)
    if why:
        raise ValueError(why)
    return value


def _line_pattern() -> str:
    """`_line`'s rules as a JSON Schema pattern, for editors (the Python check stays the
    authority and gives the message): one line of words and quoted strings, no block or
    comment sign outside quotes, no '$' or '\\', not a keyword that runs a program, holds a
    secret or reads a file, not keepalived's @ ~ $ syntax."""
    keywords = "|".join(sorted(RUNS_PROGRAMS | SECRET_KEYWORDS | CONTROL_KEYWORDS, key=len, reverse=True))
    plain = r"[^\"'{}#!$\\\x00-\x1f\x7f]"
    inside = r"[^$\\\x00-\x1f\x7f"
    return (rf"^[ \t]*(?!(?:{keywords}|(?!track_script(?:[ \t]|$))[A-Za-z0-9_]*_script)(?:[ \t]|$))(?![@~])"
            rf"(?:{plain}|\"{inside}\"]*\"|'{inside}']*')+$")


LINE_PATTERN = _line_pattern()
PATTERN_HELP[LINE_PATTERN] = ("must be one keepalived directive as written: one line, no '{', '}', '#' or '!' outside "
                              "quotes, no '$' or '\\', not a program, secret or include keyword (those have typed "
                              "fields)")
Line = Annotated[str, AfterValidator(_line), Field(json_schema_extra={"pattern": LINE_PATTERN})]
"""One keepalived directive carried as written (`garp_master_delay 10`, `lb_algo wlc`)."""


class Block(Strict):
    """A keepalived block carried as written: its header line, its lines and its blocks."""

    block: Line = Field(description="the block's first line without '{', e.g. `static_ipaddress`")
    lines: list[Line] = Field(default_factory=list, description="the block's lines, each one directive as written")
    blocks: list["Block"] = Field(default_factory=list, description="blocks inside this block, written the same way")


Block.model_rebuild()


def typed_keywords_in(lines: list, typed: dict[str, str], field: str) -> list[tuple[str, str]]:
    """Problems for verbatim lines that repeat a keyword this block has a typed field for."""
    from reconcilers.keepalived.conf import split_line

    problems = []
    for i, item in enumerate(lines):
        text = item.block if isinstance(item, Block) else item
        keyword = split_line(text)[0]
        if keyword in typed:
            problems.append((f"{field}.{i}", f"{keyword!r} has a typed field here: use {typed[keyword]}"))
    return problems


# --- programs, tracking, notification --------------------------------------------------


class Command(Strict):
    """A program keepalived runs, and the user (and group) it runs as."""

    command: Argv = Field(description="the program and its arguments, an argv list such as [/usr/bin/pgrep, -x, "
                                      "haproxy]; never a shell line")
    user: UserName | None = Field(None, description="default: the Keepalived manifest's globalDefs.scriptUser")
    group: UserName | None = Field(None, description="the group it runs as (needs user)")

    @model_validator(mode="after")
    def _group_needs_user(self) -> "Command":
        if self.group is not None and self.user is None:
            raise ValueError("group needs user (keepalived reads `command user group`)")
        return self


class TrackInterface(Strict):
    """An interface whose state moves the instance's priority (or, weight 0, puts it in FAULT)."""

    name: IfName = Field(description="the interface")
    weight: Annotated[int, Field(ge=-253, le=253)] | None = Field(
        None, description="priority change while it is down; 0 or absent: down puts the instance in FAULT")
    reverse: bool = Field(False, description="the weight applies while the interface is up instead")


class TrackRef(Strict):
    """A tracked script, file, process or BFD instance, by name, with an optional weight."""

    name: KeepalivedName = Field(description="the tracked item's name, as the Keepalived manifest (or a "
                                             "bfd_instance block) defines it")
    weight: Annotated[int, Field(ge=-254, le=254)] | None = Field(
        None, description="overrides the item's own weight for this instance")
    reverse: bool | None = Field(None, description="true: `reverse`, false: `noreverse`, absent: neither")


class Track(Strict):
    """What moves an instance's priority or puts it in FAULT."""

    interfaces: list[TrackInterface] = Field(default_factory=list, description="track_interface: interfaces")
    scripts: list[TrackRef] = Field(default_factory=list, description="names of the Keepalived manifest's scripts")
    files: list[TrackRef] = Field(default_factory=list, description="names of its trackFiles")
    processes: list[TrackRef] = Field(default_factory=list, description="names of its trackProcesses")
    bfd: list[TrackRef] = Field(default_factory=list, description="names of bfd_instance blocks")

    def is_empty(self) -> bool:
        return not (self.interfaces or self.scripts or self.files or self.processes or self.bfd)


class Notify(Strict):
    """Programs keepalived runs on a state change (each needs the node's policy)."""

    master: Command | None = Field(None, description="notify_master: run on becoming MASTER")
    backup: Command | None = Field(None, description="notify_backup: run on becoming BACKUP")
    fault: Command | None = Field(None, description="notify_fault: run on entering FAULT")
    stop: Command | None = Field(None, description="notify_stop: run when the instance stops (keepalived exits)")
    deleted: Command | None = Field(None, description="notify_deleted: run when the instance is removed by a reload")
    any: Command | None = Field(None, description="`notify`: run on every change with TYPE NAME STATE PRIORITY")
    masterRxLowerPri: Command | None = Field(
        None, description="notify_master_rx_lower_pri: run when a MASTER hears an advert of lower priority")

    def commands(self) -> dict[str, Command]:
        return {k: v for k, v in ((k, getattr(self, k)) for k in NOTIFY_KEYWORDS) if v is not None}


NOTIFY_KEYWORDS = {
    "master": "notify_master", "backup": "notify_backup", "fault": "notify_fault", "stop": "notify_stop",
    "deleted": "notify_deleted", "any": "notify", "masterRxLowerPri": "notify_master_rx_lower_pri",
}


# --- the Keepalived kind ---------------------------------------------------------------


class VrrpScript(Strict):
    """A `vrrp_script`: a check keepalived runs every `interval` seconds."""

    command: Argv = Field(description="the check: an argv list, exit 0 is success; never a shell line")
    interval: Annotated[int, Field(ge=1, le=86400)] | None = Field(None, description="seconds between runs (default 1)")
    timeout: Annotated[int, Field(ge=1, le=86400)] | None = Field(None, description="seconds before a run counts as "
                                                                                    "failed")
    weight: Annotated[int, Field(ge=-253, le=253)] | None = Field(
        None, description="0 or absent: a failure puts the tracking instances in FAULT; otherwise a priority change")
    reverse: bool = Field(False, description="the weight applies while the check succeeds instead")
    rise: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="successes in a row before it is OK")
    fall: Annotated[int, Field(ge=1, le=1000)] | None = Field(None, description="failures in a row before it is KO")
    user: UserName | None = Field(None, description="the user it runs as (default: globalDefs.scriptUser)")
    group: UserName | None = Field(None, description="the group it runs as (needs user)")
    initFail: bool = Field(False, description="`init_fail`: the check counts as failed until it first succeeds")
    extra: list[Line] = Field(default_factory=list, description="other lines of the vrrp_script block, as written")


class InitFile(Strict):
    """`init_file`: create the tracked file at start-up."""

    value: int = Field(0, description="the number written into it")
    overwrite: bool = Field(False, description="also when it exists (writes a file: needs the node policy's "
                                               "`files`)")


class TrackFile(Strict):
    """A `track_file`: a number in a file moves the priority (weight 0: non-zero is FAULT)."""

    file: AbsolutePath = Field(description="the file holding the number")
    weight: Annotated[int, Field(ge=-254, le=254)] | None = Field(
        None, description="the number times this is added to the priority; 0 or absent: non-zero is FAULT")
    reverse: bool = Field(False, description="subtract instead of add")
    initFile: InitFile | None = Field(None, description="create the file at start-up")


class TrackProcess(Strict):
    """A `vrrp_track_process`: whether a process runs (matched on its name or command line)."""

    process: Annotated[list[ArgWord], Field(min_length=1)] = Field(
        description="the process name, or its command line word by word")
    paramMatch: Literal["initial", "partial"] | None = Field(
        None, description="how the command line's words match: all given (absent), the first ones, any part")
    weight: Annotated[int, Field(ge=-254, le=254)] | None = Field(
        None, description="priority change while too few run; 0 or absent: FAULT")
    reverse: bool = Field(False, description="the weight applies while it runs instead")
    quorum: Annotated[int, Field(ge=0)] | None = Field(None, description="at least this many must run (default 1)")
    quorumMax: Annotated[int, Field(ge=0)] | None = Field(None, description="at most this many may run")
    forkDelay: Annotated[float, Field(ge=0, le=3600)] | None = Field(
        None, description="seconds to wait after a fork before counting")
    terminateDelay: Annotated[float, Field(ge=0, le=3600)] | None = Field(
        None, description="seconds to wait after a process ends before counting")
    delay: Annotated[float, Field(ge=0, le=3600)] | None = Field(
        None, description="both delays at once")
    fullCommand: bool = Field(False, description="match the full command line, not the process name")


class SyncGroup(Strict):
    """A `vrrp_sync_group`: instances that change state together."""

    instances: Annotated[list[KeepalivedName], Field(min_length=1)] = Field(
        description="the VRRP instances (keepalived VirtualIPs, or their groups) of the group")
    track: Track = Field(default_factory=Track, description="what the whole group tracks")
    notify: Notify = Field(default_factory=Notify, description="programs run on the group's state changes")
    extra: list[Line] = Field(default_factory=list, description="other lines of the vrrp_sync_group block")


class Fifo(Strict):
    """A FIFO keepalived writes its notifications into."""

    path: AbsolutePath = Field(description="the FIFO's path")
    user: UserName | None = Field(None, description="its owner")
    group: UserName | None = Field(None, description="its group (needs user)")
    script: Command | None = Field(None, description="a program keepalived starts to read the FIFO")


_EMAIL = r"^[A-Za-z0-9][A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+)?$"
Email = Annotated[str, StringConstraints(pattern=_EMAIL, max_length=254)]
Host = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")]


class SmtpServer(Strict):
    """Where keepalived sends its e-mail."""

    host: Host = Field(description="the server's address or host name")
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(None, description="default 25")


class GlobalDefs(Strict):
    """`global_defs`. Common fields are typed; any other global directive goes in `extra`."""

    routerId: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,63}$")] | None = Field(
        None, description="default: the node's name")
    scriptUser: UserName | None = Field(None, description="the user scripts run as (`script_user`)")
    scriptGroup: UserName | None = Field(None, description="the group scripts run as (needs scriptUser)")
    enableScriptSecurity: bool | None = Field(
        None, description="default: on whenever a program runs (keepalived then refuses scripts others can change)")
    notificationEmail: list[Email] = Field(default_factory=list, description="addresses e-mailed on state changes")
    notificationEmailFrom: Email | None = Field(None, description="the sender of those e-mails")
    smtpServer: SmtpServer | None = Field(None, description="the server they go through")
    smtpHeloName: Host | None = Field(None, description="the name keepalived gives in HELO")
    smtpConnectTimeout: Annotated[int, Field(ge=1, le=3600)] | None = Field(None, description="seconds")
    maxAutoPriority: Annotated[int, Field(ge=-1, le=99)] | None = Field(
        None, description="the real-time scheduling priority keepalived may raise itself to (-1: never)")
    vrrpVersion: Literal[2, 3] | None = Field(None, description="the default VRRP version of IPv4 instances")
    notifyFifo: Fifo | None = Field(None, description="a FIFO for every notification")
    vrrpNotifyFifo: Fifo | None = Field(None, description="a FIFO for VRRP notifications")
    lvsNotifyFifo: Fifo | None = Field(None, description="a FIFO for LVS notifications")
    startupScript: Command | None = Field(None, description="a program run when keepalived starts")
    shutdownScript: Command | None = Field(None, description="a program run when keepalived stops")
    extra: list[Line] = Field(default_factory=list, description="any other global_defs line, as written")

    @model_validator(mode="after")
    def _checks(self) -> "GlobalDefs":
        if self.scriptGroup is not None and self.scriptUser is None:
            raise ValueError("scriptGroup needs scriptUser")
        problems = typed_keywords_in(self.extra, GLOBAL_TYPED, "extra")
        if problems:
            raise ValueError(problems[0][1])
        return self


# Keywords with a typed field that a verbatim line may not repeat: they decide who runs the
# programs and how (the others are typed for convenience only).
GLOBAL_TYPED = {
    "router_id": "routerId", "script_user": "scriptUser", "enable_script_security": "enableScriptSecurity",
    "notification_email": "notificationEmail",
    "notify_fifo": "notifyFifo", "vrrp_notify_fifo": "vrrpNotifyFifo", "lvs_notify_fifo": "lvsNotifyFifo",
}


def _mode(value: Any) -> int:
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        value = int(value, 8)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise ValueError("a file mode such as 0750 (octal)")
    return value


Mode = Annotated[int, BeforeValidator(_mode)]


class ScriptFile(Strict):
    """A script shipped from git, installed below /etc/keepalived/reconcile."""

    path: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./@+-]{1,255}$")] = Field(
        description="a file name below /etc/keepalived/reconcile, or an absolute path inside it")
    content: FileContent = Field(description="the script itself (written as the whole file, never into a line)")
    mode: Mode = Field(0o750, description="its mode, octal (no group or other write bit: script security)")
    owner: UserName = Field("root", description="its owner")
    group: UserName = Field("root", description="its group")

    def target(self) -> str:
        return self.path if self.path.startswith("/") else f"{MANAGED_SCRIPTS}/{self.path}"

    @model_validator(mode="after")
    def _checks(self) -> "ScriptFile":
        target = posixpath.normpath(self.target())
        if target != self.target() or not target.startswith(MANAGED_SCRIPTS + "/"):
            raise ValueError(f"{self.path!r} is outside the managed folder {MANAGED_SCRIPTS}: reconcile installs "
                             "scripts only there (give a file name, or a path below that folder)")
        if self.mode & 0o022:
            raise ValueError(f"mode {self.mode:04o} lets others change the script, and keepalived's script "
                             "security refuses to run such a script as root: drop the group/other write bits")
        if not self.content.startswith("#!"):
            raise ValueError("a script starts with '#!' (its interpreter): keepalived runs it directly")
        return self


class Ssl(Strict):
    """The `SSL` block used by SSL_GET checks."""

    password: SecretRef | None = Field(None, description="the key's password, by reference ({file: …} or {env: …})")
    ca: AbsolutePath | None = Field(None, description="the CA certificate file")
    certificate: AbsolutePath | None = Field(None, description="the client certificate file")
    key: AbsolutePath | None = Field(None, description="the client key file")


class KeepalivedSpec(Placement):
    """keepalived's settings on the nodes it lands on (at most one Keepalived per node)."""

    globalDefs: GlobalDefs = Field(default_factory=GlobalDefs, description="the global_defs block")
    scripts: dict[KeepalivedName, VrrpScript] = Field(default_factory=dict, description="vrrp_script blocks")
    trackFiles: dict[KeepalivedName, TrackFile] = Field(default_factory=dict, description="track_file blocks, by "
                                                                                          "name")
    trackProcesses: dict[KeepalivedName, TrackProcess] = Field(default_factory=dict,
                                                               description="vrrp_track_process blocks, by name")
    syncGroups: dict[KeepalivedName, SyncGroup] = Field(default_factory=dict,
                                                        description="vrrp_sync_group blocks, by name")
    virtualServerGroups: dict[KeepalivedName, list[Line]] = Field(
        default_factory=dict, description="virtual_server_group NAME { ADDRESS[-RANGE] PORT | fwmark N … }")
    ssl: Ssl | None = Field(None, description="the SSL block of SSL_GET checks")
    files: list[ScriptFile] = Field(default_factory=list, description="scripts shipped from git")
    includes: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./*?@+-]{1,255}$")]] = Field(
        default_factory=list, description="`include` lines (other files keepalived reads; needs the node's policy)")
    lines: list[Line] = Field(default_factory=list, description="any other top-level line, carried as written")
    blocks: list[Block] = Field(default_factory=list, description="any other top-level block, carried as written")


class KeepalivedMetadata(Metadata):
    """What the object is called (as keepalived configurations name things) and how the
    agent treats changes made outside git."""

    name: KeepalivedName = Field(  # type: ignore[assignment]
        description="Its name, unique per kind: letters, digits and _ . - (at most 63, as keepalived names "
                    "things: VI_1, chk_haproxy), kept exactly.")


class Keepalived(Manifest):
    """What one keepalived daemon carries besides its VRRP instances (VirtualIP) and LVS
    virtual servers (VirtualServer): global_defs, scripts, tracked files and processes,
    sync groups, shipped script files and any other top-level block. At most one per node."""

    kind: Literal["Keepalived"]
    metadata: KeepalivedMetadata
    spec: KeepalivedSpec

    def claims(self) -> list[tuple[str, str]]:
        return [("keepalived-daemon:settings", "metadata.name")]

    def check(self, tree) -> list[tuple[str, str]]:
        spec = self.spec
        problems: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, f in enumerate(spec.files):
            if f.target() in seen:
                problems.append((f"spec.files.{i}.path", f"{f.target()} is already shipped (files.{seen[f.target()]})"))
            seen.setdefault(f.target(), i)
        problems += program_problems(self.commands(), tree, tree.nodes_of(self), self)
        problems += _refs(spec.syncGroups, "spec.syncGroups", self)
        instances = tree.memo(_instances_by_node)
        for gname, group in spec.syncGroups.items():
            for i, inst in enumerate(group.instances):
                for node in sorted(tree.nodes_of(self)):
                    if inst not in instances.get(node, set()):
                        problems.append((f"spec.syncGroups.{gname}.instances.{i}",
                                         f"{inst!r} is not a keepalived VirtualIP (VRRP instance) on node {node}"))
                        break
        owners: dict[str, str] = {}
        for gname, group in spec.syncGroups.items():
            for i, inst in enumerate(group.instances):
                if inst in owners:
                    problems.append((f"spec.syncGroups.{gname}.instances.{i}",
                                     f"{inst!r} is already in sync group {owners[inst]!r}: an instance is in one "
                                     "sync group at most"))
                owners.setdefault(inst, gname)
        return problems

    def commands(self) -> list[tuple[str, Command]]:
        """Every program this manifest makes keepalived run, with its field path."""
        spec = self.spec
        out: list[tuple[str, Command]] = []
        for name, s in spec.scripts.items():
            out.append((f"spec.scripts.{name}", Command(command=s.command, user=s.user, group=s.group)))
        g = spec.globalDefs
        for field in ("startupScript", "shutdownScript"):
            if getattr(g, field) is not None:
                out.append((f"spec.globalDefs.{field}", getattr(g, field)))
        for field in ("notifyFifo", "vrrpNotifyFifo", "lvsNotifyFifo"):
            fifo = getattr(g, field)
            if fifo is not None and fifo.script is not None:
                out.append((f"spec.globalDefs.{field}.script", fifo.script))
        for gname, group in spec.syncGroups.items():
            for key, cmd in group.notify.commands().items():
                out.append((f"spec.syncGroups.{gname}.notify.{key}", cmd))
        return out


def _refs(groups: dict[str, SyncGroup], field: str, k: Keepalived) -> list[tuple[str, str]]:
    problems = []
    for gname, group in groups.items():
        problems += track_problems(group.track, f"{field}.{gname}.track", [k])
    return problems


def track_problems(track: Track, field: str, settings: list["Keepalived"]) -> list[tuple[str, str]]:
    """References of `track` that none of the Keepalived manifests defines."""
    problems = []
    for attr, what, kind_field in (("scripts", "script", "scripts"), ("files", "track file", "trackFiles"),
                                   ("processes", "track process", "trackProcesses")):
        for i, ref in enumerate(getattr(track, attr)):
            if ref.name == RESERVED_TRACK and attr in ("scripts", "files"):
                continue
            if not any(ref.name in getattr(k.spec, kind_field) for k in settings):
                where = " on its nodes" if settings else " (no Keepalived manifest lands on its nodes)"
                problems.append((f"{field}.{attr}.{i}.name",
                                 f"unknown {what} {ref.name!r}: define it in spec.{kind_field} of the Keepalived "
                                 f"manifest{where}"))
    return problems


RESERVED_TRACK = "reconcile_drain"


def _instances_by_node(tree) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for vip in tree.of_kind("VirtualIP"):
        if getattr(vip.spec, "manager", None) != "keepalived":
            continue
        for node in tree.nodes_of(vip):
            out.setdefault(node, set()).update(vip.instance_names())
    return out


def program_problems(commands: list[tuple[str, Command]], tree, nodes: frozenset[str],
                     own: "Keepalived | None" = None) -> list[tuple[str, str]]:
    """Each program runs as a named user, and one in reconcile's script folder is shipped by
    a Keepalived manifest of every node it runs on."""
    problems = []
    for field, cmd in commands:
        for node in sorted(nodes):
            settings = settings_on(tree, frozenset({node}))
            if cmd.user is None and not any(k.spec.globalDefs.scriptUser for k in settings):
                problems.append((f"{field}.user", f"which user runs it on node {node}? give user here, or "
                                 "globalDefs.scriptUser in a Keepalived manifest of the node (keepalived would "
                                 "otherwise pick keepalived_script or root by itself)"))
                break
            program = cmd.command[0]
            if program.startswith(MANAGED_SCRIPTS + "/") and not any(
                    f.target() == program for k in settings for f in k.spec.files):
                problems.append((f"{field}.command.0", f"{program} is in reconcile's script folder but no Keepalived "
                                 f"manifest of node {node} ships it (spec.files)"))
                break
    return problems


def _settings_by_node(tree) -> dict[str, list[Keepalived]]:
    out: dict[str, list[Keepalived]] = {}
    for k in tree.of_kind("Keepalived"):
        for node in tree.nodes_of(k):
            out.setdefault(node, []).append(k)
    return out


def settings_on(tree, nodes: frozenset[str]) -> list[Keepalived]:
    """The Keepalived manifests landing on any of `nodes` (from an index of the tree)."""
    by_node = tree.memo(_settings_by_node)
    found: dict[int, Keepalived] = {}
    for node in nodes:
        for k in by_node.get(node, []):
            found.setdefault(id(k), k)
    return list(found.values())


def ip_family(address: str) -> int:
    """4 or 6 for an address with or without a prefix."""
    return ipaddress.ip_interface(address).version
