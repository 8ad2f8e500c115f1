"""corosync.conf: the normalized settings of a Cluster, render, parse, and what a change needs.

The settings (the Cluster object's `corosync` state) name Corosync's own keys where the
manifest types them, in one shape for a manifest and for a parsed file:

    {"clusterName": "web", "transport": "knet", "crypto": "aes256/sha256", "token": 1000,
     "totem": {"consensus": 1200, "link_mode": "passive"},
     "links": [{"linknumber": 0, "knet_link_priority": 10}],      # only options given
     "nodes": [{"name": "lb1", "id": 1, "addresses": ["192.0.2.11", "2001:db8::11"]}],
     "quorum": {"twoNode": True, "waitForAll": True, ...,
                "device": {"model": "net", "votes": 1, "net": {"host": "...", "algorithm": "ffsplit"}}},
     "extra": {"logging": {"debug": "on"}}}                       # every other key, as written

What a change needs, measured on Corosync 3.1.7 (`corosync-cfgtool -R`, then the log and
`corosync-cmapctl runtime.*`) and votequorum(5) ("only votes, quorum_votes, expected_votes
and two_node can be changed at runtime"):
- reload: totem timers, knet link options, links or nodes added or removed, votes,
  expected_votes, two_node, crypto and the authkey (knet re-reads the key on every reload,
  so every node must hold the new key first), logging and other extra keys;
- rolling restart (one node at a time): a link's address, when another link stays up
  (the reload refuses it: "To reconfigure an interface it must be deleted and recreated");
- whole-cluster restart: cluster_name, transport, ip_version ("cannot be changed at
  run-time"), link_mode, a node's nodeid, the only link's address, wait_for_all,
  last_man_standing(_window), auto_tie_breaker(_node), the quorum provider;
- the quorum device: corosync-qdevice restarted on each node (no resource moves).
reconcile reloads when a reload is enough and never restarts Corosync itself: the plan
says which restart a change waits for.
"""
from __future__ import annotations

from typing import Any

from reconcilers.base import GENERATED_HEADER, UnsafeValue, one_line
from schemas.cluster import corosync_problem, two_node
from schemas.common import duration_ms

AUTHKEY = "/etc/corosync/authkey"
COROSYNC_LOG = "/var/log/corosync/corosync.log"
DEFAULT_CRYPTO = "aes256/sha256"

TOTEM_KEYS = {"consensus": "consensus", "join": "join", "tokenRetransmitsBeforeLossConst":
              "token_retransmits_before_loss_const", "tokenCoefficient": "token_coefficient",
              "maxMessages": "max_messages", "linkMode": "link_mode", "ipVersion": "ip_version",
              "clusterUuid": "cluster_uuid"}
MS_KEYS = {"consensus", "join", "token_coefficient", "token"}
LINK_KEYS = {"number": "linknumber", "priority": "knet_link_priority", "transport": "knet_transport",
             "mcastport": "mcastport", "pingInterval": "knet_ping_interval", "pingTimeout": "knet_ping_timeout",
             "pingPrecision": "knet_ping_precision", "pongCount": "knet_pong_count"}
QUORUM_FLAGS = {"lastManStanding": "last_man_standing", "autoTieBreaker": "auto_tie_breaker"}
QUORUM_VALUES = {"lastManStandingWindow": "last_man_standing_window", "autoTieBreakerNode": "auto_tie_breaker_node",
                 "expectedVotes": "expected_votes"}
DEVICE_KEYS = {"votes": "votes", "timeout": "timeout", "syncTimeout": "sync_timeout"}
NET_KEYS = {"host": "host", "port": "port", "algorithm": "algorithm", "tieBreaker": "tie_breaker", "tls": "tls",
            "connectTimeout": "connect_timeout", "forceIpVersion": "force_ip_version"}
DEFAULT_LOGGING = {"to_logfile": "yes", "logfile": COROSYNC_LOG, "to_syslog": "yes", "to_stderr": "no",
                   "timestamp": "on"}

RELOAD, ROLLING, WHOLE, QDEVICE = "reload", "rolling restart", "whole-cluster restart", "qdevice restart"
WHOLE_CLUSTER_KEYS = {"clusterName": "cluster_name", "transport": "transport", "ip_version": "ip_version",
                      "link_mode": "link_mode", "waitForAll": "wait_for_all", "lastManStanding": "last_man_standing",
                      "lastManStandingWindow": "last_man_standing_window", "autoTieBreaker": "auto_tie_breaker",
                      "autoTieBreakerNode": "auto_tie_breaker_node", "provider": "quorum provider"}


def corosync_value(value: Any) -> str:
    """The value of a `key: value` line of corosync.conf, as it is; refused (UnsafeValue)
    when it could change the file's structure (see schemas.cluster.corosync_problem)."""
    text = one_line(str(value), "corosync.conf", max_length=255)
    why = corosync_problem(text)
    if why:
        raise UnsafeValue(f"corosync.conf: refused to write {text!r}: a value there {why}")
    return text


# --- manifest → settings --------------------------------------------------------------------


def _ms(value: str | None) -> int | None:
    return duration_ms(value) if value is not None else None


def corosync_settings(name: str, spec: Any) -> dict[str, Any]:
    """The normalized Corosync settings of a Cluster manifest."""
    crypto = "none" if spec.crypto == "none" else DEFAULT_CRYPTO
    if spec.crypto not in (None, "none"):
        crypto = f"{spec.crypto.cipher}/{spec.crypto.hash}" + (f"/{spec.crypto.model}" if spec.crypto.model else "")
    totem: dict[str, Any] = {}
    for field, key in TOTEM_KEYS.items():
        value = getattr(spec.totem, field)
        if value is not None:
            totem[key] = _ms(value) if key in MS_KEYS else value
    settings: dict[str, Any] = {"clusterName": name, "transport": spec.transport, "crypto": crypto,
                                "token": _ms(spec.token)}
    if totem:
        settings["totem"] = totem
    if spec.links is not None:
        settings["links"] = [{"linknumber": i, **{LINK_KEYS[k]: v for k, v in link.model_dump(exclude_none=True).items()}}
                             for i, link in enumerate(spec.links)]
    nodes = []
    for n in spec.nodes:
        entry: dict[str, Any] = {"name": n.name, "id": n.id, "addresses": n.link_addresses()}
        if n.votes is not None:
            entry["votes"] = n.votes
        nodes.append(entry)
    settings["nodes"] = nodes
    q = spec.quorum
    two = two_node(spec)
    quorum: dict[str, Any] = {"twoNode": two, "waitForAll": q.waitForAll if q.waitForAll is not None else two}
    if q.provider != "corosync_votequorum":
        quorum["provider"] = q.provider
    for field in (*QUORUM_FLAGS, *QUORUM_VALUES):
        value = getattr(q, field)
        if value is not None:
            quorum[field] = _ms(value) if field == "lastManStandingWindow" else value
    if q.device is not None:
        d = q.device
        device: dict[str, Any] = {"model": d.model}
        for field, key in DEVICE_KEYS.items():
            if getattr(d, field) is not None:
                device[key] = getattr(d, field) if field == "votes" else _ms(getattr(d, field))
        if d.net.algorithm == "ffsplit" and "votes" not in device:
            device["votes"] = 1  # corosync-qdevice refuses ffsplit without it ("works only if ... votes ... 1")
        net = {key: getattr(d.net, field) for field, key in NET_KEYS.items() if getattr(d.net, field) is not None}
        if "connect_timeout" in net:
            net["connect_timeout"] = _ms(net["connect_timeout"])
        device["net"] = net
        quorum["device"] = device
    settings["quorum"] = quorum
    if spec.corosync:
        settings["extra"] = spec.corosync
    return settings


# --- settings → file ------------------------------------------------------------------------


def _section(lines: list[str], depth: int, body: dict[str, Any]) -> None:
    pad = "    " * depth
    for key, value in body.items():
        if isinstance(value, list):
            for sub in value:
                lines.append(f"{pad}{key} {{")
                _section(lines, depth + 1, sub)
                lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key}: {corosync_value(value)}")


def render(settings: dict[str, Any], explicit_wait_for_all: bool, keyfile: str = AUTHKEY,
           header: bool = True) -> str:
    """corosync.conf for `settings`. `explicit_wait_for_all`: write wait_for_all even when
    it is what two_node implies (the manifest said so)."""
    extra = dict(settings.get("extra", {}))
    totem: dict[str, Any] = {"version": "2"}
    if settings["clusterName"]:
        totem["cluster_name"] = settings["clusterName"]
    totem["transport"] = settings["transport"]
    if settings.get("token") is not None:
        totem["token"] = settings["token"]
    totem.update(settings.get("totem", {}))
    if settings["crypto"] == "none":
        totem.update(crypto_cipher="none", crypto_hash="none")
    else:
        parts = settings["crypto"].split("/")
        totem.update(crypto_cipher=parts[0], crypto_hash=parts[1])
        if len(parts) > 2:
            totem["crypto_model"] = parts[2]
        totem["keyfile"] = keyfile
    totem.update(extra.pop("totem", {}))
    if settings.get("links"):
        totem["interface"] = list(settings["links"])
    lines = [f"# {GENERATED_HEADER}"] if header else []
    lines.append("totem {")
    _section(lines, 1, totem)
    lines += ["}", "", "nodelist {"]
    for n in settings["nodes"]:
        node: dict[str, Any] = {"name": n["name"]} if n["name"] else {}
        node["nodeid"] = n["id"]
        node.update({f"ring{i}_addr": a for i, a in enumerate(n["addresses"])})
        if "votes" in n:
            node["quorum_votes"] = n["votes"]
        _section(lines, 1, {"node": [node]})
    lines += ["}", "", "quorum {"]
    q = settings["quorum"]
    quorum: dict[str, Any] = {"provider": q.get("provider", "corosync_votequorum")}
    if q["twoNode"]:
        quorum["two_node"] = "1"
    if explicit_wait_for_all:
        quorum["wait_for_all"] = "1" if q["waitForAll"] else "0"
    for field, key in QUORUM_FLAGS.items():
        if field in q:
            quorum[key] = "1" if q[field] else "0"
    for field, key in QUORUM_VALUES.items():
        if field in q:
            quorum[key] = q[field]
    quorum.update(extra.pop("quorum", {}))
    if "device" in q:
        device = {k: v for k, v in q["device"].items() if k != "net"}
        device["net"] = [q["device"]["net"]]
        quorum["device"] = [device]
    _section(lines, 1, quorum)
    lines.append("}")
    logging = extra.pop("logging", DEFAULT_LOGGING)
    for name, body in [("logging", logging), *extra.items()]:
        lines += ["", f"{name} {{"]
        _section(lines, 1, body)
        lines.append("}")
    return "\n".join(lines) + "\n"


# --- file → settings ------------------------------------------------------------------------


def parse(text: str) -> dict[str, Any]:
    """corosync.conf as nested dicts; a section's value is a list of its occurrences.

    `{"totem": [{"version": "2", ...}], "nodelist": [{"node": [{...}, {...}]}]}`
    """
    root: dict[str, Any] = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            section: dict[str, Any] = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(section)
            stack.append(section)
        elif line == "}":
            if len(stack) > 1:
                stack.pop()
        elif ":" in line:
            key, _, value = line.partition(":")
            stack[-1][key.strip()] = value.strip()
    return root


def _first(sections: dict[str, Any], name: str) -> dict[str, Any]:
    found = sections.get(name) or [{}]
    return dict(found[0]) if isinstance(found, list) else {}


def flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("1", "yes", "on", "true")


def _int(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def observed_settings(conf: dict[str, Any]) -> dict[str, Any]:
    """The normalized settings of a parsed corosync.conf (same shape as `corosync_settings`);
    keys reconcile does not type are kept in `extra` as written."""
    totem = _first(conf, "totem")
    quorum = _first(conf, "quorum")
    cipher, hash_ = totem.pop("crypto_cipher", None), totem.pop("crypto_hash", None)
    model = totem.pop("crypto_model", None)
    transport = totem.pop("transport", "knet")
    if cipher in (None, "none") and hash_ in (None, "none"):
        crypto = "none"  # Corosync 3's default: no encryption unless both are set
    else:
        crypto = f"{cipher or 'none'}/{hash_ or 'none'}" + (f"/{model}" if model else "")
    token = totem.pop("token", None)
    settings: dict[str, Any] = {"clusterName": totem.pop("cluster_name", ""), "transport": transport,
                                "crypto": crypto, "token": _int(token) if token is not None else None}
    totem.pop("version", None)
    totem.pop("keyfile", None)
    typed = {k: (_int(totem.pop(k)) if k in MS_KEYS or k in ("token_retransmits_before_loss_const", "max_messages")
                 else totem.pop(k)) for k in list(TOTEM_KEYS.values()) if k in totem}
    if typed:
        settings["totem"] = typed
    interfaces = totem.get("interface", [])
    if interfaces and all(k in LINK_KEYS.values() and isinstance(v, str) for i in interfaces for k, v in i.items()):
        totem.pop("interface")  # knet link options; anything else (udp rings, members) stays as written
        settings["links"] = [{k: _int(v) if k != "knet_transport" else v for k, v in i.items()} for i in interfaces]
    nodes = []
    for n in _first(conf, "nodelist").get("node", []):
        rings = sorted((int(k[4:-5]), v) for k, v in n.items() if k.startswith("ring") and k.endswith("_addr")
                       and k[4:-5].isdigit())
        entry: dict[str, Any] = {"name": n.get("name", ""), "id": _int(n.get("nodeid", "")),
                                 "addresses": [a for _, a in rings]}
        if "quorum_votes" in n:
            entry["votes"] = _int(n["quorum_votes"])
        nodes.append(entry)
    settings["nodes"] = nodes
    two = bool(flag(quorum.pop("two_node", None)))
    wait = flag(quorum.pop("wait_for_all", None))
    q: dict[str, Any] = {"twoNode": two, "waitForAll": two if wait is None else wait}
    provider = quorum.pop("provider", "corosync_votequorum")
    if provider != "corosync_votequorum":
        q["provider"] = provider
    for field, key in QUORUM_FLAGS.items():
        if key in quorum:
            q[field] = bool(flag(quorum.pop(key)))
    for field, key in QUORUM_VALUES.items():
        if key in quorum:
            q[field] = _int(quorum.pop(key))
    devices = quorum.pop("device", [])
    if devices:
        d = dict(devices[0])
        net = dict((d.pop("net", None) or [{}])[0])
        device: dict[str, Any] = {"model": d.pop("model", "net")}
        for key in DEVICE_KEYS.values():
            if key in d:
                device[key] = _int(d.pop(key))
        device["net"] = {k: (_int(v) if k in ("port", "connect_timeout") else v) for k, v in net.items()}
        q["device"] = device
    settings["quorum"] = q
    extra: dict[str, Any] = {}
    if totem:
        extra["totem"] = totem
    if quorum:
        extra["quorum"] = quorum
    for name, body in conf.items():
        if name in ("totem", "nodelist", "quorum"):
            continue
        if name == "logging" and body and dict(body[0]) == DEFAULT_LOGGING:
            continue
        extra[name] = body[0] if len(body) == 1 else body
    if extra:
        settings["extra"] = extra
    return settings


# --- what a change needs --------------------------------------------------------------------


def needs(before: dict[str, Any], after: dict[str, Any], key_changed: bool = False) -> dict[str, list[str]]:
    """What the change from `before` to `after` settings needs: {RELOAD|ROLLING|WHOLE|
    QDEVICE: [what]} (empty lists left out)."""
    out: dict[str, list[str]] = {RELOAD: [], ROLLING: [], WHOLE: [], QDEVICE: []}
    for field in ("clusterName", "transport"):
        if before.get(field) != after.get(field):
            out[WHOLE].append(WHOLE_CLUSTER_KEYS[field])
    if before.get("crypto") != after.get("crypto") or key_changed:
        out[RELOAD].append("crypto" if before.get("crypto") != after.get("crypto") else "authkey")
    bt, at = before.get("totem", {}), after.get("totem", {})
    for key in sorted(set(bt) | set(at)):
        if bt.get(key) != at.get(key):
            out[WHOLE if key in ("ip_version", "link_mode") else RELOAD].append(key)
    if before.get("token") != after.get("token"):
        out[RELOAD].append("token")
    if before.get("links") != after.get("links"):
        out[RELOAD].append("link options")
    old = {n["name"]: n for n in before.get("nodes", [])}
    new = {n["name"]: n for n in after.get("nodes", [])}
    links_before = max((len(n["addresses"]) for n in old.values()), default=0)
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            out[RELOAD].append(f"node {name} {'added' if a is None else 'removed'}")
            continue
        if a.get("id") != b.get("id"):
            out[WHOLE].append(f"nodeid of {name}")
        for i, (x, y) in enumerate(zip(a["addresses"], b["addresses"])):
            if x != y:
                out[ROLLING if links_before > 1 else WHOLE].append(f"link {i} address of {name}")
        if len(a["addresses"]) != len(b["addresses"]):
            out[RELOAD].append(f"links of {name}")
        if a.get("votes") != b.get("votes"):
            out[RELOAD].append(f"votes of {name}")
    bq, aq = dict(before.get("quorum", {})), dict(after.get("quorum", {}))
    if bq.pop("device", None) != aq.pop("device", None):
        out[QDEVICE].append("quorum device")
    for field in sorted(set(bq) | set(aq)):
        if bq.get(field) != aq.get(field):
            out[WHOLE if field in WHOLE_CLUSTER_KEYS else RELOAD].append(
                WHOLE_CLUSTER_KEYS.get(field, {"twoNode": "two_node", "expectedVotes": "expected_votes"}.get(field, field)))
    if before.get("extra") != after.get("extra"):
        out[RELOAD].append("other keys (Corosync applies at run time what it can; its log names the rest)")
    return {k: v for k, v in out.items() if v}


def describe_needs(needs_: dict[str, list[str]], running: bool) -> list[str]:
    """Plan lines for what a Corosync change needs."""
    if not running:
        return []
    lines = []
    if needs_.get(RELOAD):
        lines.append(f"corosync: reload (corosync-cfgtool -R) applies {', '.join(needs_[RELOAD])}")
    if needs_.get(QDEVICE):
        lines.append("corosync: the quorum device changes: corosync-qdevice is restarted on this node (no resource "
                     "moves)")
    if needs_.get(ROLLING):
        lines.append(f"corosync: {', '.join(needs_[ROLLING])} take(s) effect after a rolling restart of Corosync "
                     "(one node at a time); reconcile writes the file and does not restart Corosync")
    if needs_.get(WHOLE):
        lines.append(f"corosync: {', '.join(needs_[WHOLE])} take(s) effect only after a whole-cluster restart of "
                     "Corosync (every node stopped, then started: resources stop); reconcile writes the file and "
                     "never restarts Corosync by itself")
    return lines
