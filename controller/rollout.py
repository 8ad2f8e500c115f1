"""Coordinated rollouts: a new revision reaches a cluster's nodes one turn at a time, so
that a valid-but-wrong commit never takes every member of an HA group down at once.

The agent asks `Rollout.attempt` before it applies a new revision. Without a coordinator
(no rollout policy, see `Reconciler.coordinator` in reconcilers/base.py) the revision is
applied at once, as before. With one:

1. Nothing to change on this node → apply (a no-op) and publish the revision: no turn.
   Nothing applied yet on this node (a new node) → apply: there is nothing to take down.
2. Otherwise take a turn (`decide`, written with the coordinator's compare-and-set): the
   nodes before this one in the order run the revision, idle and not Degraded; fewer than
   `maxUnavailable` nodes are out of service, counting this one; the rollout of this
   revision is not halted. Else wait (the agent asks again every second, enforcing the
   revision it has meanwhile). The order is `order` as written; without one, the nodes
   that serve nothing go first and the ones that serve (hold a VIP, run a Pacemaker
   resource: each agent publishes what it serves) last, each group in spec.nodes' order
   (`turn_order`), so that a change reaches the nodes traffic goes through once it has
   worked on nodes it does not go through.
3. In the turn: drain unless the change may go in place (below), apply, pass the health
   gate (every object and node facet Healthy — a drain we made is not held against it —
   and every probe, within the gate's timeout), undrain, soak (stay Healthy in service),
   publish (with the proof: `proof`), release the turn.
4. A failed gate halts the rollout of that revision (state Halted, the node and the
   reason in the CIB: every agent stops) and leaves the node drained (drained then, if it
   changed in place). With `onFailure: rollback` it also re-applies its last good
   revision and comes back if that passes. The next commit starts a new rollout.

Which changes skip the drain, and why (`drain_reason`, from each reconciler's
`disruption` hook). A VIP that moves between nodes resets any TCP connection caught
mid-flight (the connection's state is in the HAProxy it left; VRRP moves addresses, not
connections), so no drain of the node that holds it can make that window zero: the only
hitless drain of the VIP holder is none. So:
- None: changes the daemon makes without dropping a connection and whose result is
  not in doubt: HAProxy server weight, maxconn, admin state and removals over the
  runtime API. In place on every node.
- `Unproven`: the mechanism drops no connection but the new configuration is untried:
  an HAProxy reload (master-worker: the master hands the listening sockets to the new
  workers, the old ones finish their connections), a server added or sent to another
  address over the runtime API. In place once proven: another node runs the same
  revision, is in service and not Degraded, and passed its health gate with the same
  desired state of that reconciler (a digest per reconciler, published as
  `reconcile-proven`; the same revision alone is not enough, placements may differ).
  Until then — the first node of a rollout, an explicit `order` that puts the VIP holder
  first — it drains.
- Anything else drains: a start or restart, keepalived, Corosync and Pacemaker changes,
  a reconciler without the hook, changes that cannot be told.
A node that serves nothing still drains for an unproven change: it moves nothing (keepalived
goes to FAULT on a backup, a standby of a node without resources returns at once), and it
keeps an untried configuration out of the VRRP election and Pacemaker's placement while it
is tested, so that a failure of the holder meanwhile fails over to a node on the known-good
revision. With the default order a good commit thus moves no VIP at all: the nodes that serve
nothing go first, the first drained (free) and the rest in place, and the VIP holders change
last, in place.

After a drain that moved something away (the node served), the rollout waits until the
node's daemons hold no client connection (the `connections` hook: HAProxy's CurrConns over
every worker), at most CONNECTIONS_WAIT_SECONDS (10 s), before it applies; a connection
left then is logged and the turn goes on (HTTP keep-alive clients may hold idle
connections until HAProxy's timeouts).

A turn whose holder left the cluster, or whose heartbeat has not changed for
`turnTimeout` as this agent saw it (its own clock: no clock sync needed), is released by
the next agent's compare-and-set. The node itself still counts as out of service unless
the last thing it published was "in service and not Degraded" (e.g. it was soaking).

`reconcile status --cluster` shows the coordinator's view (controller/rollout_view.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from reconcilers.base import ApplyError, CommandError, Node, Runner, Unproven

log = logging.getLogger("reconcile.rollout")

IN_TURN = ("draining", "applying", "gating")  # out of service
IN_SERVICE = ("idle", "waiting", "soaking", "")  # "" : never published (an agent without a rollout yet)
HEARTBEAT_SECONDS = 1.0
POLL_SECONDS = 1.0
ALLOWED_WHILE_DRAINED = {"Drained"}  # health reasons a node we drained is allowed to have in its gate
CONNECTIONS_WAIT_SECONDS = 10.0  # after a drain that moved addresses away: wait this long at most for 0 connections


def seconds(duration: str) -> float:
    from schemas.common import duration_ms

    return duration_ms(duration) / 1000.0


# --- the decision (pure) -------------------------------------------------------------------------


@dataclass
class Decision:
    go: bool
    reason: str  # why it waits, or "" when it goes
    turn: dict[str, Any] | None = None  # the turn to write when it goes


def available(info: dict[str, Any] | None) -> bool:
    """In service: online, not in a turn or failed, and not Degraded."""
    return bool(info) and bool(info.get("online")) and info.get("phase", "") in IN_SERVICE \
        and info.get("health") != "Degraded"


def done(info: dict[str, Any] | None, revision: str, gone: bool = False) -> bool:
    """Finished with `revision`: running it, in service, and not soaking any more (a
    holder whose agent went silent while soaking counts as finished: it was Healthy in
    service, and nobody is left to end its soak)."""
    return available(info) and (info or {}).get("revision") == revision and \
        ((info or {}).get("phase") != "soaking" or gone)


def decide(policy: dict[str, Any], view: dict[str, Any], me: str, revision: str, stale: set[str] = frozenset()
           ) -> Decision:  # type: ignore[assignment]
    """May `me` take its turn for `revision`? The turn to write if so."""
    turn, nodes = view["turn"], view["nodes"]
    holders = [h for h in turn.get("holders", []) if h not in stale]
    if me in holders:  # an agent that restarted in its own turn carries on
        return Decision(True, "", dict(turn, holders=holders))
    if turn.get("revision") == revision and turn.get("state") == "Halted":
        return Decision(False, f"the rollout of {revision[:12]} is halted: {turn.get('failed')} failed: "
                               f"{turn.get('reason')}")
    order = turn_order(policy, nodes)
    if me not in order:
        return Decision(False, f"{me} is not in the rollout's order")
    k = int(policy.get("maxUnavailable", 1))
    for n in order[:order.index(me)]:
        if n in holders and k > 1:
            continue
        if not done(nodes.get(n), revision, n in stale):
            info = nodes.get(n) or {}
            what = ("offline" if not info.get("online") else
                    f"at {str(info.get('revision') or 'no revision')[:12]}, {info.get('phase') or 'no phase'}, "
                    f"{info.get('health') or 'health unknown'}")
            return Decision(False, f"waiting for {n} (before {me} in the order) to run {revision[:12]}: it is {what}")
    out = [n for n in order if n != me and (n in holders or not available(nodes.get(n)))]
    if len(out) + 1 > k:
        return Decision(False, f"{', '.join(out)} out of service: maxUnavailable {k} leaves no room for {me}")
    new = {"revision": revision, "state": "Progressing", "holders": holders + [me], "failed": "", "reason": "",
           "since": str(int(time.time()))}
    if turn.get("revision") == revision:
        new["failed"], new["reason"] = turn.get("failed", ""), turn.get("reason", "")
    return Decision(True, "", new)


def turn_order(policy: dict[str, Any], nodes: dict[str, Any]) -> list[str]:
    """The order turns go in: `order` as written; without one (`servingLast`), the nodes
    that serve nothing first and those that publish what they serve last, each group in
    spec.nodes' order."""
    order: list[str] = list(policy["order"])
    if not policy.get("servingLast"):
        return order
    quiet = [n for n in order if not (nodes.get(n) or {}).get("serving")]
    return quiet + [n for n in order if n not in quiet]


def drain_reason(disruptions: list[str], proven_on: str | None) -> str | None:
    """Why a turn drains its node first, or None when it changes in place: every change is
    hitless (no disruption), or every disruption is `Unproven` and `proven_on` names the
    peer that passed its gate with the same desired state."""
    if not disruptions:
        return None
    if proven_on and all(isinstance(d, Unproven) for d in disruptions):
        return None
    return "; ".join(disruptions[:3]) + (f" (+{len(disruptions) - 3} more)" if len(disruptions) > 3 else "")


def label(rec: Any) -> str:
    """A reconciler's short name in a proof: "HAProxy" for HAProxyReconciler."""
    name = type(rec).__name__
    return name[:-len("Reconciler")] if name.endswith("Reconciler") and name != "Reconciler" else name


def digests(engine: Any, recs: list[Any] | None = None) -> dict[str, str]:
    """Per reconciler that has a `disruption` hook (or of `recs`), a digest of its whole
    desired state on this node (every object of its kinds): what a proof compares."""
    from controller.plan import state_hash

    out: dict[str, str] = {}
    for rec in (engine.owners if recs is None else recs):
        if rec is None or getattr(rec, "disruption", None) is None:
            continue
        state = {k: {n: state_hash(d.state) for n, d in sorted(engine.desired.get(k, {}).items())} for k in rec.kinds}
        if any(state.values()):
            out[label(rec)] = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
    return out


def proof(revision: str, found: dict[str, str]) -> str:
    """What a node publishes after it passed a gate: "<revision> HAProxy=<digest> …"."""
    return " ".join([revision] + [f"{k}={v}" for k, v in sorted(found.items())])


def proven_on(view: dict[str, Any], me: str, revision: str, needed: dict[str, str]) -> str | None:
    """A peer whose published proof covers `needed` (reconciler → digest) for `revision`,
    and which runs that revision in service and not Degraded; None when there is none."""
    if not needed:
        return None
    for name, info in sorted(view["nodes"].items()):
        if name == me or not available(info) or info.get("revision") != revision:
            continue
        words = str(info.get("proven") or "").split()
        if not words or words[0] != revision:
            continue
        have = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        if all(have.get(k) == v for k, v in needed.items()):
            return name
    return None


def released(turn: dict[str, Any], me: str) -> dict[str, Any]:
    return dict(turn, holders=[h for h in turn.get("holders", []) if h != me])


def halted(turn: dict[str, Any], me: str, revision: str, reason: str) -> dict[str, Any]:
    return dict(turn, revision=revision, state="Halted", failed=me, reason=reason,
                holders=[h for h in turn.get("holders", []) if h != me], since=str(int(time.time())))


class Staleness:
    """Which turn holders are gone: offline, or their heartbeat unchanged for `timeout`
    seconds of this agent's monotonic clock."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic):
        self.timeout = timeout
        self.clock = clock
        self.seen: dict[str, tuple[str, float]] = {}

    def stale(self, view: dict[str, Any], me: str) -> set[str]:
        now = self.clock()
        out = set()
        for h in view["turn"].get("holders", []):
            if h == me:
                continue
            info = view["nodes"].get(h) or {}
            beat = str(info.get("heartbeat", ""))
            if h not in self.seen or self.seen[h][0] != beat:
                self.seen[h] = (beat, now)
            if not info.get("online") or now - self.seen[h][1] >= self.timeout:
                out.add(h)
        return out


# --- probes and the health gate --------------------------------------------------------------


def probe(p: dict[str, Any], default_address: str) -> str | None:
    """Run one probe; None when it passes, else why not."""
    address = p.get("address") or default_address
    timeout = seconds(p.get("timeout") or "2s")
    where = f"{address}:{p['port']}"
    if p["type"] == "tcp":
        try:
            with socket.create_connection((address, p["port"]), timeout=timeout):
                return None
        except OSError as err:
            return f"tcp {where}: {err.strerror or err}"
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:{p['port']}{p.get('path') or '/'}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (an http URL built from the schema)
            status = r.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (OSError, urllib.error.URLError) as err:
        return f"http {url}: {getattr(err, 'reason', err)}"
    ok = status in p["expectStatus"] if p.get("expectStatus") else 200 <= status < 400
    return None if ok else f"http {url}: status {status}"


def unhealthy(record: Any, allowed: set[str]) -> list[str]:
    """What in a run record is not Healthy (reasons in `allowed` excused), not in sync, or failed."""
    out = [f"{o.label}: {o.status}" + (f" ({o.error})" if o.error else "") for o in record.objects
           if o.status in ("failed", "skipped", "not-converging", "not-installed", "pending")]
    out += [f"{o.label}: {o.health['status']} ({o.health['reason']}: {o.health.get('message', '')})"
            for o in record.objects if o.health and o.health["status"] != "Healthy"
            and o.health["reason"] not in allowed]
    out += [f"node {facet}: {h['status']} ({h['reason']}: {h.get('message', '')})"
            for facet, h in record.node_health.items() if h["status"] != "Healthy" and h["reason"] not in allowed]
    out += record.errors
    return out


def gate(engine: Any, record: Any, probes: list[dict[str, Any]], address: str, timeout: float,
         allowed: set[str], stop: Callable[[], bool] = lambda: False) -> tuple[bool, str, float]:
    """Wait (bounded) until the node is healthy and every probe passes: (passed, why not, seconds)."""
    started = time.monotonic()
    why = ""
    while True:
        bad = unhealthy(record, allowed)
        bad += [f for f in (probe(p, address) for p in probes) if f]
        took = time.monotonic() - started
        if not bad:
            return True, "", took
        why = "; ".join(bad[:3])
        if took >= timeout or stop():
            return False, f"not healthy after {took:.0f}s: {why}", took
        time.sleep(min(POLL_SECONDS, max(timeout - took, 0.05)))
        engine.recheck_health(record)


# --- the agent's side ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """What `Rollout.attempt` did: applied (the record is the run's), waiting, or free
    (no coordination: the agent applies as usual)."""

    kind: str  # free | waiting | applied | halted | rolled-back
    reason: str = ""
    record: Any = None
    figures: dict[str, float] = field(default_factory=dict)


def coordinator(tree: Any, node: Node) -> Any:
    """The coordinator an installed reconciler offers for this node and tree, or None."""
    from reconcilers import installed

    for cls in installed():
        hook = getattr(cls, "coordinator", None)
        if hook is not None:
            found = hook(tree, node)
            if found is not None:
                return found
    return None


def drain_all(node: Node, command: str) -> list[str]:
    """Every reconciler's drain (or undrain) hook; a failed drain undoes what was drained."""
    from reconcilers import installed

    said: list[str] = []
    done_: list[Any] = []
    for cls in installed():
        if getattr(cls, command, None) is None:
            continue
        rec = cls()
        t = time.monotonic()
        try:
            line = getattr(rec, command)(node)
        except (ApplyError, CommandError):
            if command == "drain":
                for undo in reversed(done_):
                    try:
                        undo.undrain(node)
                    except (ApplyError, CommandError) as err:
                        log.warning("undrain after a refused drain failed: %s", err)
            raise
        if line is not None:
            said.append(f"{line} [{time.monotonic() - t:.2f}s]")
            done_.append(rec)
    return said


def serving_all(node: Node) -> list[str]:
    """What a drain would take away from this node now (every reconciler's `serving`
    hook); a hook that cannot tell counts as serving: the safe side (it goes last and
    changes in place only when proven)."""
    from reconcilers import installed

    out: list[str] = []
    for cls in installed():
        if getattr(cls, "serving", None) is None:
            continue
        try:
            out += cls().serving(node) or []
        except Exception as err:
            out.append(f"{cls.__name__}: unknown ({err})")
    return out


def connections_all(node: Node) -> int:
    """Client connections this node's daemons hold now (every `connections` hook)."""
    from reconcilers import installed

    total = 0
    for cls in installed():
        if getattr(cls, "connections", None) is not None:
            total += cls().connections(node) or 0
    return total


def wait_connections(node: Node, bound: float = CONNECTIONS_WAIT_SECONDS) -> tuple[int, float]:
    """Wait until the node holds no client connection, at most `bound` seconds:
    (connections left, seconds waited)."""
    started = time.monotonic()
    while True:
        try:
            left = connections_all(node)
        except (ApplyError, CommandError, OSError) as err:
            log.warning("rollout: cannot count connections: %s", err)
            return -1, round(time.monotonic() - started, 2)
        took = time.monotonic() - started
        if left == 0 or took >= bound:
            return left, round(took, 2)
        time.sleep(0.1)


class Rollout:
    """The agent's rollout: attempt a revision, take turns, keep the heartbeat."""

    def __init__(self, agent: Any):
        self.agent = agent
        self.state: dict[str, Any] = {}  # for agent.json: phase, waiting, revision, figures
        self.published: dict[str, str] = {}
        self.staleness: Staleness | None = None
        self._beat: threading.Event | None = None
        self.needs_turn: dict[str, bool] = {}  # revision → whether this node has changes to make
        self.serving: list[str] = []  # what this node served at the last look

    def _node(self) -> Node:
        return Node(self.agent.config.node, Runner(), self.agent.config.state_dir)

    def publish(self, coord: Any, **facts: str) -> None:
        changed = {k: v for k, v in facts.items() if self.published.get(k) != v}
        if not changed:
            return
        try:
            coord.publish(changed)
            self.published.update(changed)
        except (ApplyError, CommandError) as err:
            log.warning("cannot publish %s: %s", ", ".join(changed), err)

    def _publish_serving(self, coord: Any, node: Node) -> None:
        self.serving = serving_all(node)
        self.publish(coord, serving="; ".join(self.serving))

    def after_run(self, tree: Any, record: Any) -> None:
        """After any run outside a turn: publish the revision and health it left, and what
        the node serves."""
        node = self._node()
        try:
            coord = coordinator(tree, node)
        except Exception as err:  # a rollout must never stop the agent enforcing git
            log.debug("no coordinator: %s", err)
            return
        if coord is None:
            return
        health = record.health_summary().get("status") or "Unknown"
        phase = self.published.get("phase") if self.published.get("phase") == "failed" else "idle"
        self.publish(coord, revision=record.revision, health=health, phase=phase)
        self._publish_serving(coord, node)

    # --- one attempt ---------------------------------------------------------------------

    def attempt(self, loaded: tuple[Any, Any], trigger: str) -> Outcome:
        revision, tree = loaded
        node = self._node()
        try:
            coord = coordinator(tree, node)
        except Exception as err:
            log.warning("rollout: no coordinator (%s): applying without one", err)
            coord = None
        if coord is None or (self.agent.good or self.agent._restore_good()) is None:
            self.state = {}
            return Outcome("free")
        policy = coord.policy
        if self.staleness is None or self.staleness.timeout != seconds(policy["turnTimeout"]):
            self.staleness = Staleness(seconds(policy["turnTimeout"]))
        # Asked once per revision (observing costs): later polls only read the CIB.
        if revision.sha not in self.needs_turn:
            self.needs_turn = {revision.sha: bool(self._pending(tree, node)[0])}
        if not self.needs_turn[revision.sha]:
            self.state = {"revision": revision.sha, "phase": "idle", "message": "nothing to change here: no turn"}
            return Outcome("free")
        me = node.name
        # What this node serves decides its place in the default order: said before each look.
        self._publish_serving(coord, node)
        try:
            view = self._as_i_am(coord.view(), me)
        except Exception as err:
            return self._wait(revision.sha, f"cannot read the cluster's rollout state: {err}")
        stale = self.staleness.stale(view, me)
        decision = decide(policy, view, me, revision.sha, stale)
        if not decision.go:
            self.publish(coord, phase="waiting" if self.published.get("phase") != "failed" else "failed")
            return self._wait(revision.sha, decision.reason)
        try:
            turn = coord.update_turn(lambda v: self._retake(policy, v, me, revision.sha))
        except (ApplyError, CommandError) as err:
            return self._wait(revision.sha, f"taking the turn failed: {err}")
        if turn is None:
            return self._wait(revision.sha, "another node took the turn first")
        if stale:
            log.info("rollout: released the turn of %s (not heard of for %s)", ", ".join(sorted(stale)),
                     policy["turnTimeout"])
        self.needs_turn = {}
        return self._turn(coord, loaded, trigger, stale)

    def _as_i_am(self, view: dict[str, Any], me: str) -> dict[str, Any]:
        """The view with this node's own facts as it knows them (its last publish may not
        be in the CIB yet)."""
        view["nodes"].setdefault(me, {})["serving"] = "; ".join(self.serving)
        return view

    @staticmethod
    def _pending(tree: Any, node: Node) -> tuple[list[tuple[Any, Any]], Any]:
        """The changes an apply would make here, and the (dry-run) engine that found them."""
        from controller.engine import Engine

        engine = Engine(tree, Node(node.name, Runner(dry_run=True), node.state_dir), health=False)
        try:
            return engine.pending(), engine
        except Exception as err:  # cannot tell: take a turn and drain, the safe side
            log.debug("rollout: pending changes unknown: %s", err)
            return [(None, None)], None

    def _retake(self, policy: dict[str, Any], view: dict[str, Any], me: str, sha: str) -> dict[str, Any] | None:
        view = self._as_i_am(view, me)
        d = decide(policy, view, me, sha, self.staleness.stale(view, me) if self.staleness else set())
        return d.turn if d.go else None

    def _wait(self, sha: str, reason: str) -> Outcome:
        if self.state.get("waiting") != reason:
            log.info("rollout of %s: %s", sha[:12], reason)
        self.state = {"revision": sha, "phase": "waiting", "waiting": reason}
        return Outcome("waiting", reason)

    # --- a turn ----------------------------------------------------------------------------

    def _how(self, coord: Any, tree: Any, node: Node, sha: str) -> tuple[str | None, str]:
        """(why this turn drains, or None: in place; what it does, for people). Looked at
        in the turn: the changes, and whether a peer proved them."""
        pending, engine = self._pending(tree, node)
        found = [(rec, why) for rec, ch in pending if (why := self._disruption(rec, ch, node))]
        reasons = [why for _, why in found]
        if not reasons:
            return None, "every change is hitless (runtime API): in place"
        peer = None
        if engine is not None and all(isinstance(w, Unproven) for w in reasons):
            needed = digests(engine, list({id(r): r for r, _ in found}.values()))
            try:
                peer = proven_on(coord.view(), node.name, sha, needed)
            except Exception as err:
                log.info("rollout: cannot read the peers' proofs (%s): draining", err)
        why = drain_reason(reasons, peer)
        if why is None:
            return None, f"in place: {'; '.join(reasons[:2])}, proven on {peer}"
        return why, f"drained first: {why}"

    def _turn(self, coord: Any, loaded: tuple[Any, Any], trigger: str, stale: set[str]) -> Outcome:
        revision, tree = loaded
        node = self._node()
        policy = coord.policy
        me = node.name
        address = coord.addresses.get(me, "")
        figures: dict[str, float] = {}
        started = time.monotonic()
        self._heartbeat(coord, True)
        try:
            why, how = self._how(coord, tree, node, revision.sha)
            drained = False
            if why is not None:
                served = serving_all(node)
                self.publish(coord, phase="draining")
                self.state = {"revision": revision.sha, "phase": "draining", "how": how}
                t = time.monotonic()
                try:
                    lines = drain_all(node, "drain")
                except (ApplyError, CommandError) as err:
                    coord.update_turn(lambda v: released(v["turn"], me))
                    self.publish(coord, phase="idle")
                    return self._wait(revision.sha, f"cannot drain {me}: {err}")
                drained = True
                figures["drain"] = round(time.monotonic() - t, 2)
                if served:  # traffic came here: let the connections it left finish (bounded)
                    left, figures["connections"] = wait_connections(node)
                    if left:
                        log.info("rollout: %s still holds %s client connection(s) after %.1fs: applying", me,
                                 left if left > 0 else "an unknown number of", figures["connections"])
                log.info("rollout: drained %s in %.2fs (%s) because %s", me, figures["drain"], "; ".join(lines), why)
            else:
                log.info("rollout: %s changes %s", me, how)
            self.publish(coord, phase="applying")
            self.state = {"revision": revision.sha, "phase": "applying", "how": how}
            t = time.monotonic()
            record = self.agent._run(loaded, trigger)
            figures["apply"] = round(time.monotonic() - t, 2)
            self.publish(coord, phase="gating")
            self.state["phase"] = "gating"
            gate_cfg = policy["healthGate"]
            ok, why_not, took = gate(self.agent.last_engine, record, gate_cfg["probes"], address,
                                     seconds(gate_cfg["timeout"]), ALLOWED_WHILE_DRAINED,
                                     lambda: self.agent.stop_requested)
            figures["gate"] = round(took, 2)
            if self.agent.stop_requested:
                return self._stopping(revision.sha)
            if ok and drained:
                drain_all(node, "undrain")
                drained = False
            if ok:
                self.publish(coord, phase="soaking", health="Healthy", revision=revision.sha,
                             proven=proof(revision.sha, digests(self.agent.last_engine)))
                self.state["phase"] = "soaking"
                soak = seconds(policy["soak"])
                t = time.monotonic()
                while ok and time.monotonic() - t < soak and not self.agent.stop_requested:
                    time.sleep(min(POLL_SECONDS, soak))
                    self.agent.last_engine.recheck_health(record)
                    bad = unhealthy(record, set()) + [f for f in (probe(p, address) for p in gate_cfg["probes"]) if f]
                    if bad:
                        ok, why_not = False, f"failed while soaking: {'; '.join(bad[:3])}"
                figures["soak"] = round(time.monotonic() - t, 2)
            if self.agent.stop_requested:
                return self._stopping(revision.sha)
            if ok:
                coord.update_turn(lambda v: released(v["turn"], me))
                self.publish(coord, phase="idle", health="Healthy", revision=revision.sha)
                self._publish_serving(coord, node)
                figures["turn"] = round(time.monotonic() - started, 2)
                self.state = {"revision": revision.sha, "phase": "idle", "figures": figures, "how": how,
                              "message": f"turn done in {figures['turn']:.1f}s"}
                log.info("rollout: %s done with %s in %.1fs %s", me, revision.sha[:12], figures["turn"],
                         json.dumps(figures))
                return Outcome("applied", record=record, figures=figures)
            return self._failed(coord, loaded, record, why_not, figures, drained)
        finally:
            self._heartbeat(coord, False)

    def _stopping(self, sha: str) -> Outcome:
        """SIGTERM in a turn is no failure: the node stays as it is and keeps the turn; the
        agent started again carries on with it (or turnTimeout hands it on)."""
        log.info("rollout of %s: stopping in this node's turn; the next agent carries on", sha[:12])
        self.state = {"revision": sha, "phase": self.state.get("phase", ""), "waiting": "stopped in its turn"}
        return Outcome("waiting", "stopped in its turn")

    def _disruption(self, rec: Any, change: Any, node: Node) -> str | None:
        if rec is None or change is None:
            return "changes unknown"
        hook = getattr(rec, "disruption", None)
        if hook is None:
            return f"{change.kind} {change.name}: {change.action}"
        try:
            return hook(change, node)
        except Exception as err:  # when in doubt, drain
            return f"{change.kind} {change.name}: {err}"

    def _failed(self, coord: Any, loaded: tuple[Any, Any], record: Any, why: str, figures: dict[str, float],
                drained: bool) -> Outcome:
        revision, _tree = loaded
        me = self.agent.config.node
        policy = coord.policy
        log.error("rollout of %s halted: %s failed its health gate: %s", revision.sha[:12], me, why)
        if not drained:  # it changed in place (or came back to soak): its peers serve now
            try:
                log.info("rollout: drained %s after its failed gate (%s)", me,
                         "; ".join(drain_all(self._node(), "drain")))
                drained = True
            except (ApplyError, CommandError) as err:
                log.error("rollout: cannot drain %s after its failed gate: %s", me, err)
        coord.update_turn(lambda v: halted(v["turn"], me, revision.sha, why))
        self.publish(coord, phase="failed", health="Degraded", revision=revision.sha)
        figures["turn"] = round(sum(figures.values()), 2)
        self.state = {"revision": revision.sha, "phase": "failed", "reason": why, "figures": figures}
        good = self.agent.good
        if policy["onFailure"] != "rollback" or good is None:
            return Outcome("halted", why, record, figures)
        back = self.agent._run(good, "rollback")
        ok, why_back, _ = gate(self.agent.last_engine, back, policy["healthGate"]["probes"],
                               coord.addresses.get(me, ""), seconds(policy["healthGate"]["timeout"]),
                               ALLOWED_WHILE_DRAINED)
        if ok:
            if drained:
                drain_all(self._node(), "undrain")
            self.publish(coord, phase="idle", health="Healthy", revision=good[0].sha)
            self.state = {"revision": good[0].sha, "phase": "idle", "reason": why, "figures": figures,
                          "message": f"rolled back to {good[0].sha[:12]} after {revision.sha[:12]} failed"}
        else:
            self.state["message"] = f"the rollback to {good[0].sha[:12]} failed too: {why_back}"
        return Outcome("rolled-back", why, back, figures)

    def _heartbeat(self, coord: Any, on: bool) -> None:
        if not on:
            if self._beat is not None:
                self._beat.set()
                self._beat = None
            self.publish(coord, heartbeat="")
            return
        stop = threading.Event()
        self._beat = stop

        def beat() -> None:
            while not stop.is_set():
                try:
                    coord.publish({"heartbeat": str(time.time())})
                except Exception as err:
                    log.debug("heartbeat: %s", err)
                stop.wait(HEARTBEAT_SECONDS)

        self.published.pop("heartbeat", None)
        threading.Thread(target=beat, name="rollout-heartbeat", daemon=True).start()
