"""From manifests to what HAProxy reads: each object's section(s), as lines, and the files
it needs beside the config (certificates by reference, map and ACL files).

Typed fields render to directives in a fixed order, then the manifest's own directives in
their order. reconcile adds a few lines of its own (marked `# reconcile`): the admin
socket, the server-state file, `hard-stop-after`, `load-server-state-from-file` in each
defaults section, and `option idle-close-on-response` in HTTP frontends (a reload then
never cuts an idle keep-alive connection). A line that holds a secret is a `SecretLine`:
its value is read only when the file is installed, and the plan shows the reference.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from reconcilers.base import UnsafeValue
from reconcilers.haproxy.config import (
    ACLS, ADMIN_SOCKET, FILES, INDENT, LOG_RING, MAPS, OURS, SECRET_MARK, STATE_FILE, SectionKey, haproxy_word,
)
from schemas.common import SecretRef
from schemas.haproxy import Directive, RefLine
from schemas.haproxy_lang import FILE_PLACEHOLDER, SECRET_PLACEHOLDER, words

w = haproxy_word  # every value written into a line goes through it


@dataclass(frozen=True)
class SecretLine:
    """A directive with `((secret))` where a secret's value goes."""

    template: str
    ref: SecretRef

    @property
    def token(self) -> str:
        """The line as plans and the normalized state show it: the reference, no value."""
        return self.template.replace(SECRET_PLACEHOLDER, f"<secret {self.ref.describe()}>")

    def fill(self, value: str) -> str:
        try:
            return self.template.replace(SECRET_PLACEHOLDER, w(value))
        except UnsafeValue:  # its message would quote the secret
            raise UnsafeValue(f"{self.ref.describe()}: this secret cannot be written as one word of haproxy.cfg "
                              f"(it is empty, or holds a single quote, a control character or a leading '-')") from None


Line = Union[str, SecretLine]


@dataclass(frozen=True)
class ManagedFile:
    """A file reconcile writes beside the config (0600) from a reference."""

    ref: SecretRef
    certificate: bool  # a `crt`: replaced at run time (set/commit ssl cert), no reload


@dataclass
class Rendered:
    """One object as HAProxy reads it: its sections and the files it needs."""

    kind: str
    name: str
    sections: dict[SectionKey, list[Line]] = field(default_factory=dict)
    files: dict[str, ManagedFile] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    acls: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[SectionKey, str] = field(default_factory=dict)


def section_lines(header: str, body: list[Line], *, fill: Any = None) -> list[str]:
    """A section's text lines. `fill(SecretLine) -> str` puts secret values in (install);
    without it, the tokens stay (plans, checks of what reconcile would write)."""
    out = [header]
    for line in body:
        if isinstance(line, SecretLine):
            out += [INDENT + SECRET_MARK, INDENT + (fill(line) if fill else line.token)]
        else:
            out.append(INDENT + line)
    return out


class _Files:
    """Names for the files an object refers to: stable per object and reference, so a
    changed certificate keeps its path (and can be replaced at run time)."""

    def __init__(self, out: Rendered, folder: str):
        self.out, self.folder = out, FILES / folder

    def path(self, ref: SecretRef, certificate: bool) -> str:
        base = Path(ref.file).name if ref.file else f"{ref.env}.pem"
        path, n = str(self.folder / base), 1
        while path in self.out.files and self.out.files[path].ref != ref:
            n += 1
            path = str(self.folder / f"{n}-{base}")
        self.out.files[path] = ManagedFile(ref, certificate)
        return path


def directive(d: Directive, files: _Files) -> Line:
    """A manifest's directive as a line: a file reference becomes the managed copy's path."""
    if isinstance(d, str):
        return d
    assert isinstance(d, RefLine)
    if d.secret is not None:
        return SecretLine(d.line, d.secret)
    ws = words(d.line)
    certificate = any(ws[i] == "crt" and FILE_PLACEHOLDER in ws[i + 1] for i in range(len(ws) - 1))
    return d.line.replace(FILE_PLACEHOLDER, w(files.path(d.file, certificate)))  # type: ignore[arg-type]


def _ours(line: str) -> str:
    return f"{line}  {OURS}"


def _has(lines: list[Line], *prefix: str) -> bool:
    return any(isinstance(line, str) and words(line)[: len(prefix)] == list(prefix) for line in lines)


# --- reconcile's own global and defaults (no HAProxy manifest on the node) ------------------


def builtin_sections() -> dict[SectionKey, list[Line]]:
    return {
        ("global", ""): [
            "user haproxy", "group haproxy", "chroot /var/lib/haproxy",
            f"log ring@{LOG_RING} local0 info",
            # The admin socket is the runtime API; `expose-fd listeners` also lets a non
            # master-worker reload (-x) take the listening sockets over.
            _ours(f"stats socket {ADMIN_SOCKET} mode 660 level admin expose-fd listeners"),
            "stats timeout 30s",
            # Saved just before each reload, so runtime drains and weights survive it.
            _ours(f"server-state-file {STATE_FILE}"),
            # Old workers finish their connections after a reload; this bounds how long one
            # stays (a long TCP session is cut after that).
            _ours("hard-stop-after 30m"),
        ],
        ("ring", LOG_RING): _ring(1 << 20),
        ("defaults", ""): [
            "mode http", "log global", _ours("load-server-state-from-file global"), "option redispatch",
            "retries 3", "timeout connect 5s", "timeout client 30s", "timeout server 30s", "timeout queue 30s",
            "timeout http-request 10s",
        ],
    }


def _ring(size: int) -> list[Line]:
    # Logs in memory, read on the admin socket (`show events reconcile-log`): works on a
    # node without syslog, and under systemd as well.
    return ['description "HAProxy log (show events reconcile-log on the admin socket)"', "format rfc5424",
            "maxlen 2048", f"size {size}"]


# --- the HAProxy kind ----------------------------------------------------------------------


def render_haproxy(name: str, spec: Any) -> Rendered:
    out = Rendered("HAProxy", name)
    files = _Files(out, "global")
    glob: list[Line] = [directive(d, files) for d in spec.global_]
    if spec.maxconn is not None:
        glob.insert(0, f"maxconn {w(spec.maxconn)}")
    if spec.logging is not None:
        glob.append(_log_line(spec.logging))
        if spec.logging.to == "ring":
            out.sections[("ring", LOG_RING)] = _ring(spec.logging.ringSize)
    if not any(isinstance(line, str) and words(line)[:3] == ["stats", "socket", str(ADMIN_SOCKET)] for line in glob):
        glob.append(_ours(f"stats socket {ADMIN_SOCKET} mode 660 level admin expose-fd listeners"))
    if not _has(glob, "server-state-file"):
        glob.append(_ours(f"server-state-file {STATE_FILE}"))
    if not _has(glob, "hard-stop-after"):
        glob.append(_ours("hard-stop-after 30m"))
    out.sections[("global", "")] = glob
    for section in spec.sections:
        key = (section.type, section.name)
        out.sections[key] = [directive(d, _Files(out, f"{section.type}-{section.name}")) for d in section.directives]
        out.headers[key] = f"{section.type} {w(section.name)}"
    for d in spec.defaults:
        body = [directive(x, _Files(out, f"defaults-{d.name or 'default'}")) for x in d.directives]
        if not _has(body, "load-server-state-from-file"):
            body.append(_ours("load-server-state-from-file global"))
        key = ("defaults", d.name or "")
        out.sections[key] = body
        out.headers[key] = " ".join(["defaults", *([w(d.name)] if d.name else []),
                                     *(["from", w(d.defaults)] if d.defaults else [])])
    for map_name, entries in spec.maps.items():
        out.maps[str(MAPS / f"{map_name}.map")] = dict(entries)
    for acl_name, patterns in spec.acls.items():
        out.acls[str(ACLS / f"{acl_name}.acl")] = list(patterns)
    return out


def _log_line(logging: Any) -> str:
    target = {"ring": f"ring@{LOG_RING}", "stderr": "stderr format raw", "stdout": "stdout format raw"}.get(
        logging.to) or w(logging.to)
    return f"log {target} {w(logging.facility)} {w(logging.level)}"


# --- frontends and backends ------------------------------------------------------------------


def _endpoint(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return w(f"{host}:{port}" if port is not None else host)


def _bind(bind: Any, files: _Files) -> str:
    ip = ipaddress.ip_address(bind.address)
    parts = ["bind", _endpoint(bind.address, bind.port)]
    if bind.tls is not None:
        parts += ["ssl", "crt", w(files.path(bind.tls.certificate, True))]
        if bind.tls.alpn:
            parts += ["alpn", w(",".join(bind.tls.alpn))]
        if bind.tls.minVersion:
            parts += ["ssl-min-ver", w(bind.tls.minVersion)]
    # A bind to a floating address must work on the node that does not hold it now
    # (keepalived BACKUP, Pacemaker elsewhere): IP_TRANSPARENT on our own listening
    # socket allows that, without the node-wide ip_nonlocal_bind sysctl.
    if not (ip.is_unspecified or ip.is_loopback):
        parts.append("transparent")
    return " ".join(parts + [w(o) for o in bind.options])


def _stats(stats: Any) -> list[Line]:
    out: list[Line] = ["stats enable", f"stats uri {w(stats.uri)}"]
    if stats.realm:
        out.append(f"stats realm {w(stats.realm)}")
    if stats.refresh:
        out.append(f"stats refresh {w(stats.refresh)}")
    out += [SecretLine(f"stats auth {w(u.user)}:{SECRET_PLACEHOLDER}", u.password) for u in stats.auth]
    if stats.admin:
        out.append("stats admin if TRUE")
    return out


def _host_acl(host: str) -> str:
    fetch = "req.hdr(host),field(1,:)"  # the Host header without a port
    if host.startswith("*."):
        return f"{fetch} -m end -i {haproxy_word(host[1:])}"
    return f"{fetch} -m str -i {haproxy_word(host)}"


def _path_acls(path: str) -> list[str]:
    # A path prefix matches whole segments: /api matches /api and /api/x, not /apix.
    if path.endswith("/"):
        return [f"path_beg {haproxy_word(path)}"]
    return [f"path {haproxy_word(path)}", f"path_beg {haproxy_word(path + '/')}"]


def _header(keyword: str, name: str, defaults: str | None) -> str:
    return f"{keyword} {w(name)}" + (f" from {w(defaults)}" if defaults else "")


def _mode(spec: Any, directives: list[Line], inherited: str | None) -> str | None:
    for line in directives:
        if isinstance(line, str) and words(line)[:1] == ["mode"] and len(words(line)) > 1:
            return words(line)[1]
    return spec.mode or inherited


def _proxy_common(spec: Any, mode: str | None, body: list[Line], directives: list[Line], files: _Files,
                  listens: bool) -> None:
    if spec.mode:
        body.append(f"mode {w(spec.mode)}")
    if listens and mode == "http" and not any("idle-close-on-response" in str(d) for d in directives):
        # A reload must not break idle keep-alive connections: the old worker answers
        # their next request with "Connection: close" instead of closing them.
        body.append(_ours("option idle-close-on-response"))
    body += [_bind(b, files) for b in spec.bind]
    if spec.forwardFor:
        body.append("option forwardfor")
    if spec.stats is not None:
        body += _stats(spec.stats)


def render_frontend(name: str, spec: Any, inherited_mode: str | None = "http") -> Rendered:
    out = Rendered("Frontend", name)
    files = _Files(out, f"frontend-{name}")
    directives = [directive(d, files) for d in spec.directives]
    mode = _mode(spec, directives, inherited_mode)
    body: list[Line] = []
    _proxy_common(spec, mode, body, directives, files, listens=True)
    if spec.logFormat:
        body.append({"http": "option httplog", "tcp": "option tcplog", "https": "option httpslog",
                     "clf": "option httplog clf"}[spec.logFormat])
    if spec.maxconn is not None:
        body.append(f"maxconn {w(spec.maxconn)}")
    t = spec.timeouts
    for key, value in (("client", t.client), ("http-request", t.httpRequest), ("http-keep-alive", t.httpKeepAlive)):
        if value:
            body.append(f"timeout {key} {w(value)}")
    if spec.redirect is not None:
        body.append(f"http-request redirect scheme {w(spec.redirect.scheme)} code {w(spec.redirect.code)} "
                    f"if !{{ ssl_fc }}")
    for i, rule in enumerate(spec.rules):
        conditions = []
        if rule.host:
            body.append(f"acl rule{i}_host {_host_acl(rule.host)}")
            conditions.append(f"rule{i}_host")
        if rule.path:
            body += [f"acl rule{i}_path {acl}" for acl in _path_acls(rule.path)]
            conditions.append(f"rule{i}_path")
        body.append(f"use_backend {w(rule.backend)} if {' '.join(conditions)}")
    body += directives
    if spec.defaultBackend:
        body.append(f"default_backend {w(spec.defaultBackend)}")
    key = ("frontend", name)
    out.sections[key] = body
    out.headers[key] = _header("frontend", name, spec.defaults)
    return out


_CHECK_OPTION = {"mysql": "option mysql-check user {user}", "pgsql": "option pgsql-check user {user}",
                 "redis": "option redis-check", "ldap": "option ldap-check", "smtp": "option smtpchk",
                 "ssl-hello": "option ssl-hello-chk"}


def _health(check: Any) -> list[Line]:
    if check.type == "http":
        out: list[Line] = [f"option httpchk {w(check.method)} {w(check.path)}"]
        if check.host:
            out.append(f"http-check send hdr host {w(check.host)}")
        out.append(f"http-check expect status {w(check.expectStatus)}")
        return out
    if check.type in _CHECK_OPTION:
        return [_CHECK_OPTION[check.type].format(user=w(check.user) if check.user else "")]
    return []


def server_line(server: Any, check: Any, files: _Files) -> str:
    where = _endpoint(server.address, server.port) if server.address else \
        w(f"{server.host}:{server.port}" if server.port else server.host)
    parts = ["server", w(server.name), where, "weight", w(server.weight)]
    if server.backup:
        parts.append("backup")
    if server.maxconn is not None:
        parts += ["maxconn", w(server.maxconn)]
    if check.type != "none":
        parts += ["check", "inter", w(check.interval), "fall", w(check.fall), "rise", w(check.rise)]
        if check.port:
            parts += ["port", w(check.port)]
        if check.address:
            parts += ["addr", w(check.address)]
    if check.agentPort:
        parts += ["agent-check", "agent-port", w(check.agentPort), "agent-inter", w(check.interval)]
    if server.host and server.resolvers:
        parts += ["resolvers", w(server.resolvers), "init-addr", "last,libc,none"]
    if server.tls is not None:
        parts += ["ssl", "verify", w(server.tls.verify)]
        if server.tls.sni:
            parts += ["sni", w(f"str({server.tls.sni})")]
        if server.tls.ca is not None:
            parts += ["ca-file", w(files.path(server.tls.ca, False))]
        elif server.tls.verify == "required":
            parts += ["ca-file", "@system-ca"]
    parts += [w(o) for o in server.options]
    if server.state == "maint":
        parts.append("disabled")
    return " ".join(parts)


def render_backend(name: str, spec: Any, inherited_mode: str | None = "http") -> Rendered:
    out = Rendered("Backend", name)
    files = _Files(out, f"{spec.section}-{name}")
    directives = [directive(d, files) for d in spec.directives]
    mode = _mode(spec, directives, inherited_mode)
    body: list[Line] = []
    _proxy_common(spec, mode, body, directives, files, listens=spec.section == "listen")
    if spec.balance:
        body.append("balance " + " ".join(w(word) for word in spec.balance.split()))
        if spec.balance == "source":
            body.append("hash-type consistent")  # a dynamic algorithm: servers can be added at run time
    if spec.servers:
        body += _health(spec.healthCheck)
    t = spec.timeouts
    for key in ("connect", "server", "queue", "check", "tunnel"):
        if getattr(t, key):
            body.append(f"timeout {key} {w(getattr(t, key))}")
    body += directives
    body += [server_line(s, spec.healthCheck, files) for s in spec.servers]
    key = (spec.section, name)
    out.sections[key] = body
    out.headers[key] = _header(spec.section, name, spec.defaults)
    return out


def inherited_mode(haproxy: Any | None, defaults: str | None) -> str | None:
    """The mode a proxy takes from its defaults section: reconcile's own defaults say http;
    an HAProxy manifest's say what they say (none: HAProxy's default, tcp)."""
    if haproxy is None:
        return "http"
    sections = haproxy.spec.defaults
    chosen = next((d for d in sections if d.name == defaults), None) if defaults else (sections[-1] if sections else None)
    seen: set[int] = set()
    while chosen is not None and id(chosen) not in seen:
        seen.add(id(chosen))
        for d in chosen.directives:
            ws = words(d if isinstance(d, str) else d.line)
            if ws[:1] == ["mode"] and len(ws) > 1:
                return ws[1]
        chosen = next((d for d in sections if d.name == chosen.defaults), None) if chosen.defaults else None
    return "tcp"
