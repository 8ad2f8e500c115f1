"""Health of HAProxy frontends and backends, from one `show stat` of the admin socket.

- a frontend: loaded and listening (`OPEN`);
- a backend: every server UP as its health check sees it (`UP`, `DOWN`, `MAINT`, `DRAIN`,
  `no check`), per server with the check's verdict (L4CON, L7STS …); a server in MAINT or
  DRAIN because git says so, or set by an operator where the manifest lets them (`ignore:
  [state]`), is shown but not a fault, as long as some server serves; a `server-template`
  slot no name resolved to is not a server; a backend without servers answers by itself;
- right after a change, Unknown until the checks had time to judge it (`check_timing`:
  the slowest `inter` and largest `fall` of its checked servers).

Pure functions of parsed output (`show stat` as CSV), tested on recordings.
"""
from __future__ import annotations

import csv
import io
import re
import time
from typing import Any

from reconcilers.base import Health
from reconcilers.haproxy.parse import template_names
from schemas.common import duration_ms

UP_WORDS = ("UP", "no check")  # "no check": the server has no health check and is used


def parse_stat_rows(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """`show stat` CSV → proxy → svname (FRONTEND, BACKEND or a server) → its columns."""
    text = text.lstrip()
    if text.startswith("# "):
        text = text[2:]
    out: dict[str, dict[str, dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        px, sv = row.get("pxname"), row.get("svname")
        if px and sv:
            out.setdefault(px, {})[sv] = {k: v for k, v in row.items() if k and v}
    return out


def server_state(row: dict[str, str]) -> str:
    """UP, DOWN, MAINT, DRAIN, NOLB or `no check` (transitions like `UP 1/3` read as UP)."""
    status = row.get("status", "")
    if status.startswith("no check"):
        return "no check"
    return status.split()[0] if status else "UNKNOWN"


def frontend_health(name: str, rows: dict[str, dict[str, dict[str, str]]] | None, binds: list[str]) -> Health:
    if rows is None:
        return Health.degraded("NotRunning", "HAProxy does not run on this node")
    row = rows.get(name, {}).get("FRONTEND")
    if row is None:
        return Health.degraded("NotLoaded", "the running HAProxy has no such frontend")
    status = row.get("status", "")
    if status != "OPEN":
        return Health.degraded("NotListening", f"frontend status {status or 'unknown'} (not accepting connections)")
    return Health.healthy("Listening", f"listening on {', '.join(binds)}" if binds else "listening")


def backend_health(name: str, rows: dict[str, dict[str, dict[str, str]]] | None, desired: dict[str, Any],
                   operator_state: bool = False) -> Health:
    """`desired`: the backend's desired state (servers → {state, backup, …});
    `operator_state`: the manifest lets an operator set servers' state (ignore: [state])."""
    if rows is None:
        return Health.degraded("NotRunning", "HAProxy does not run on this node")
    proxy = rows.get(name)
    if proxy is None or "BACKEND" not in proxy:
        return Health.degraded("NotLoaded", "the running HAProxy has no such backend")
    servers = {sv: row for sv, row in proxy.items() if sv not in ("FRONTEND", "BACKEND")}
    wanted = desired.get("servers", {})
    slots = template_names([line for line in desired.get("lines", []) if isinstance(line, str)])
    # A `server-template` slot that no name resolved to (yet) is in MAINT: not a server that fails.
    servers = {sv: row for sv, row in servers.items()
               if not (sv in slots and sv not in wanted and server_state(row) == "MAINT")}
    serving, faults, notes = [], [], []
    for sv in sorted(servers):
        state = server_state(servers[sv])
        want = wanted.get(sv, {})
        if state in UP_WORDS:
            serving.append(sv)
        elif state in ("MAINT", "DRAIN"):
            if want.get("state", "ready") != "ready":
                notes.append(f"{sv} {state} (as in git)")
            elif operator_state:
                notes.append(f"{sv} {state} (set at run time)")
            else:
                faults.append(f"{sv} {state}")
        else:
            check = servers[sv].get("check_status") or servers[sv].get("last_chk") or ""
            faults.append(f"{sv} {state}" + (f" ({check})" if check else ""))
    total = len(servers)
    counted = f"{len(serving)}/{total} UP"
    extra = "; ".join(notes)
    if not servers and not slots and not wanted:  # answers by itself (a redirect, a deny, stats)
        return Health.healthy("NoServers", "has no servers")
    if not serving:
        none = "no name of its server-template resolved" if slots and not servers else "no servers"
        return Health.degraded("NoServerUp", f"no server serves: {', '.join(faults + notes) or none}")
    if faults:
        return Health.degraded("ServersDown", f"{', '.join(faults)}; {counted}" + (f"; {extra}" if extra else ""))
    return Health.healthy("ServersUp", counted + (f"; {extra}" if extra else ""))


def haproxy_health(running: bool, wanted: bool) -> Health:
    """The node's "haproxy" facet."""
    if not wanted:
        return Health.healthy("NothingToRun", "no HAProxy object on this node")
    if not running:
        return Health.degraded("NotRunning", "HAProxy does not run (or its admin socket does not answer)")
    return Health.healthy("Running", "running, admin socket answers")


_HAPROXY_TIME = re.compile(r"([0-9]+)(us|ms|s|m|h|d)?")
_TIME_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def check_timing(servers: dict[str, dict[str, Any]], default_server: list[str]) -> dict[str, Any]:
    """How slowly HAProxy's checks of a backend judge a change, as `checks_pending` takes
    it: the longest `inter` and the largest `fall` of its checked servers (HAProxy's
    defaults 2s and 3), from their options after the `default-server` words they take;
    type none when no server is checked."""
    interval_ms, fall = 0.0, 0
    for server in servers.values():
        if not server.get("check"):
            continue
        inter, falls = 2000.0, 3
        options = [*default_server, *str(server.get("options", "")).split()]
        for word, value in zip(options, options[1:]):
            if word == "inter" and (m := _HAPROXY_TIME.fullmatch(value)):
                inter = int(m.group(1)) * _TIME_MS[m.group(2)]
            elif word == "fall" and value.isdigit():
                falls = int(value)
        interval_ms, fall = max(interval_ms, inter), max(fall, falls)
    if not fall:
        return {"type": "none"}
    return {"type": "check", "interval": f"{max(1, round(interval_ms))}ms", "fall": fall}


def checks_pending(changed_at: float | None, check: dict[str, Any], now: float | None = None) -> float:
    """Seconds until HAProxy's checks have judged a backend changed at `changed_at`
    (monotonic): until then a server keeps the state it had (a new one starts UP), so
    "all UP" right after a change says nothing. 0 when due or never changed."""
    if changed_at is None or check.get("type", "none") == "none":
        return 0.0
    interval = duration_ms(check.get("interval", "2s")) / 1000
    due = changed_at + (int(check.get("fall", 3)) + 1) * interval
    return max(0.0, due - (time.monotonic() if now is None else now))
