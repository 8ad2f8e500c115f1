"""DomainJoin: the node as a client of Active Directory (or LDAP + Kerberos) through sssd.

What one DomainJoin object is on a node:

- membership (adcli joins): the computer account in AD and its keys in /etc/krb5.keytab,
  made by `adcli join` (password on stdin). Sync is the keytab holding the desired
  principal; whether AD still accepts it is health (the KDC's verdict on the keytab's keys,
  `kinit -k`); apply asks `adcli testjoin` before it replaces an account and leave before it
  deletes one; observe never asks;
- its files, one artifact set (files.py): sssd.conf (0600, generated whole, with
  `realmd_tags` so `realm list` tells the truth), the sudo rules, /etc/krb5.conf when the
  manifest asks, the PAM line for home directories, `sss` in nsswitch.conf;
- sssd itself, running and started after its configuration was last written; under
  systemd also started at boot (sssd.service enabled), and its sssd.conf leaves out of
  `services` the responders the node starts from their sockets (Debian enables
  sssd-nss.socket, sssd-pam.socket, … with sssd: listing them too makes those sockets
  fail). Both are facts of the node, read by observe and apply: desired stays pure.

A record of the join (domain, computer name, OU, the account and secret *reference* used,
what was added to nsswitch.conf, whether the keytab existed before) is kept in the agent's
state folder: removing the manifest leaves the domain (`adcli delete-computer`, with the
same account) and removes exactly what was written, also after the manifest is gone.

apply gets every change of a pass at once: files are rendered once, checked natively once,
installed once, and sssd restarted at most once. Changing groups, names or home settings
rewrites the files and restarts sssd; only a change of domain, computer name or OU joins
again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

from reconcilers.base import (
    GENERATED_HEADER, ApplyError, AtomicWriter, Background, Change, CommandError, Desired, Health, HealthReport,
    Interrupted, Node, Outcomes, Reconciler, Refusal, pid_alive, read_secret, systemd_running, unit_notes,
)
from reconcilers.domain import adcli, daemon, files, health, krb5, nsswitch, pam, sssd, sudoers
from reconcilers.domain.files import Artifacts, Paths, read
from schemas.common import SecretRef


class DomainJoinReconciler(Reconciler):
    """Joins the node to a domain and keeps sssd, krb5, nsswitch, PAM and sudo in line with git."""

    kind = "DomainJoin"
    units = (daemon.UNIT,)

    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths()
        self.wanted: dict[str, Artifacts] = {}
        self.tree: Any = None
        self.enforce = False  # metadata.drift: enforce on a join here: unmask/enable sssd.service when held
        self._asked: dict[str, Background] = {}  # what prepare_health started, by join

    # --- desired -----------------------------------------------------------------------------

    def desired(self, tree: Any, node: Node) -> dict[str, dict[str, Desired]]:
        self.tree = tree
        out: dict[str, Desired] = {}
        self.enforce = False
        for m in tree.on_node("DomainJoin", node.name):
            self.enforce = self.enforce or m.metadata.drift == "enforce"
            a = files.render(m.metadata.name, m.spec, node.name)
            self.wanted[a.name] = a
            out[a.name] = Desired(a.state)
        return {self.kind: out}

    def render(self, node: Node) -> dict[str, str]:
        """The files this node would get (passwords as `<secret: …>` tokens)."""
        out: dict[str, str] = {}
        for a in self.wanted.values():
            out[str(self.paths.sssd_conf)] = a.sssd_conf
            if a.sudoers is not None:
                out[str(self.paths.sudoers(a.name))] = a.sudoers
            if a.krb5_conf is not None:
                out[str(self.paths.krb5_conf)] = a.krb5_conf
        return out

    # --- observe -----------------------------------------------------------------------------

    def _marker_dir(self, node: Node) -> Path:
        return Path(node.state_dir) / "domain-join"

    def read_markers(self, node: Node) -> dict[str, dict[str, Any]]:
        """The records of our joins. One that cannot be read is an error naming it, never
        skipped: read as missing, a removal from git would no longer leave the domain."""
        out = {}
        for path in sorted(self._marker_dir(node).glob("*.json")):
            try:
                data: Any = json.loads(path.read_text())
            except (OSError, ValueError) as err:
                data = err
            if not isinstance(data, dict) or data.get("name") != path.stem:
                why = f"cannot be read ({data})" if isinstance(data, Exception) else \
                    f"is damaged: not a record of DomainJoin/{path.stem}"
                raise ApplyError(f"{path}: {why}: it is reconcile's record of how this node joined its domain. "
                                 "Restore it from a backup, or move it aside: the join then counts as made "
                                 "outside reconcile (kept, never deleted by reconcile)")
            out[path.stem] = data
        return out

    def observe(self, node: Node) -> dict[str, dict[str, dict[str, Any]]]:
        markers = self.read_markers(node)
        recorded = [(m.get("domain"), m.get("computerName")) for m in markers.values() if m.get("computerName")]
        member = adcli.membership(node, self.paths.keytab, recorded[0] if len(recorded) == 1 else None)
        names = set(markers)
        if member and not names:
            # Joined without a record (by hand, or the record was lost): it belongs to the
            # manifest for that domain, if any. Without one it is not ours to touch.
            names |= {n for n, a in self.wanted.items() if a.spec.domain == member["domain"]}
        # Our own files name their object (a sudoers rule, a PAM block): seen without a
        # record too, so that a removal from git still takes them away (issue 21, item 2).
        names |= self._named_in_files()
        if not names:
            return {self.kind: {}}
        systemd = systemd_running()
        sockets = sssd.socket_activated(self.paths.sssd_wants) if systemd else frozenset()
        unit = daemon.unit_state(node) if systemd else None
        return {self.kind: {name: self._observe_one(node, name, markers.get(name), member, sockets, unit)
                            for name in sorted(names)}}

    def _named_in_files(self) -> set[str]:
        """The DomainJoin names our sudoers files and PAM blocks carry."""
        p = self.paths
        out = {f.name.removeprefix("reconcile-") for f in p.sudoers_dir.glob("reconcile-*")
               if GENERATED_HEADER in (read(f) or "")}
        for line in (read(p.pam_session) or "").splitlines():
            if line.startswith(pam.BLOCK_BEGIN):
                out.add(line.removeprefix(pam.BLOCK_BEGIN).partition(":")[0].strip())
        return {n for n in out if n}

    def _observe_one(self, node: Node, name: str, marker: dict[str, Any] | None, member: dict[str, Any] | None,
                     sockets: frozenset[str] = frozenset(), unit: Any = None) -> dict[str, Any]:
        p = self.paths
        want = self.wanted.get(name)
        membership = None
        if member:
            membership = {"domain": member["domain"], "computerName": member["computerName"], "ou": None}
            if marker and (marker.get("domain"), marker.get("computerName")) == \
                    (member["domain"], member["computerName"]):
                membership["ou"] = marker.get("ou")  # where we created it; AD moves are not drift
        modes: dict[str, str] = {}
        conf_text = read(p.sssd_conf)
        conf: Any = None
        if conf_text is not None:
            modes["sssd.conf"] = files.mode_of(p.sssd_conf)
            try:
                wanted = want.state["sssdConf"].get("sssd", {}).get("services") if want else None
                conf = sssd.normalized(conf_text, self._secrets(node, want.spec) if want else {}, sockets, wanted)
            except sssd.IniError as err:
                conf = f"(sssd cannot read it: {err})"
        rules: list[str] = []
        sudo_text = read(p.sudoers(name))
        if sudo_text is not None:
            modes["sudoers"] = files.mode_of(p.sudoers(name))
            rules = sudoers.parse_rules(sudo_text)
        kconf = None
        krb5_text = read(p.krb5_conf)
        if krb5_text is not None and GENERATED_HEADER in krb5_text:
            modes["krb5.conf"] = files.mode_of(p.krb5_conf)
            kconf = krb5.parse_krb5_conf(krb5_text)
        block = pam.parse_pam_block(read(p.pam_session) or "", name)
        mkhomedir: dict[str, Any] = {"create": block is not None}
        if block is not None:
            mkhomedir.update(skel=block.get("skel"), umask=block.get("umask"))
        sources = nsswitch.nsswitch_sources(read(p.nsswitch) or "")
        return {
            "membership": membership,
            "sssdConf": conf,
            "sudo": rules,
            "krb5Conf": kconf,
            "mkhomedir": mkhomedir,
            "nsswitch": ", ".join(sorted(db for db in nsswitch.NSS_DATABASES if "sss" in sources.get(db, []))),
            "sssd": daemon.status(p.sssd_pid, p.sssd_conf, unit),
            "files": modes,
        }

    def _secrets(self, node: Node, spec: Any) -> dict[tuple[str, str], str]:
        """The referenced passwords, to compare with what sssd.conf holds ("" when unreadable)."""
        out = {}
        for section, key, ref in sssd.secret_options(spec):
            try:
                out[(section, key)] = read_secret(ref, node)
            except ApplyError:
                out[(section, key)] = ""
        return out

    # --- watch -------------------------------------------------------------------------------

    def watch(self, node: Node, stop: Any = None) -> Iterator[str]:
        """Yield when a file this kind manages changes (inotify through watchfiles) or sssd
        stops (checked every few seconds)."""
        import watchfiles

        p = self.paths
        watched = {str(f) for f in (p.keytab, p.nsswitch, p.sssd_conf, p.pam_session, p.krb5_conf)}
        dirs = sorted(d for d in {str(Path(f).parent) for f in watched} | {str(p.sudoers_dir)} if Path(d).is_dir())

        def ours(path: str) -> bool:
            q = Path(path)
            return path in watched or (q.parent == p.sudoers_dir and q.name.startswith("reconcile-"))

        was_running = pid_alive(p.sssd_pid) is not None
        for changes in watchfiles.watch(*dirs, watch_filter=lambda _c, path: ours(path), recursive=False,
                                        debounce=200, rust_timeout=3000, yield_on_timeout=True, stop_event=stop):
            if changes:
                yield "changed: " + ", ".join(sorted({path for _, path in changes}))
            running = pid_alive(p.sssd_pid) is not None
            if was_running and not running:
                yield "sssd stopped"
            was_running = running

    # --- validate / explain ------------------------------------------------------------------

    def validate(self, node: Node) -> list[Refusal | str]:
        """visudo, sssctl and the Kerberos profile parser on the rendered files, once per
        content and node (native_check)."""
        out: list[Refusal | str] = []
        for a in self.wanted.values():
            found = files.check(node, a, self.paths)
            if found:  # one refusal per object: the engine keeps one message per object
                out.append(Refusal("; ".join(f"{self._where(a.name)}: {p}" for p in found), ((self.kind, a.name),)))
        return out

    def _where(self, name: str, field: str = "") -> str:
        item = next((i for i in self.tree.loaded(self.kind) if i.name == name), None) if self.tree else None
        return (item.where(field) + (f": {field}" if field else "")) if item else f"DomainJoin {name}"

    def explain(self, change: Change, node: Node) -> list[str]:
        if change.action == "delete":
            m = (change.observed or {}).get("membership") or {}
            if not (self._marker_dir(node) / f"{change.name}.json").exists():
                return ["stop sssd, remove the files reconcile wrote; no record of how it joined (lost): the "
                        "computer account and keytab stay (leave by hand: adcli delete-computer)"]
            if m.get("domain"):
                return [f"leave {m.get('domain')}: delete computer account {m.get('computerName')}$ in AD, "
                        "stop sssd, remove the files reconcile wrote"]
            return ["stop sssd, remove the files reconcile wrote"]
        want, have = change.desired or {}, change.observed or {}
        notes = []
        a = self.wanted[change.name]
        if want.get("membership") and want.get("membership") != have.get("membership"):
            m = want["membership"]
            where = f" in {m['ou']}" if m.get("ou") else ""
            notes.append(f"join {m['domain']} as {m['computerName']}${where} (adcli, password from "
                         f"{a.spec.password.describe()})")
        if want.get("krb5Conf") and not have.get("krb5Conf") and read(self.paths.krb5_conf) is not None:
            notes.append(f"{self.paths.krb5_conf} is replaced; the one there now is kept aside and put back when "
                         "this DomainJoin goes")
        held = []
        if have and not daemon.starts_at_boot(have.get("sssd")):
            held = unit_notes(node, [daemon.UNIT], self.enforce)
        if any("operator's hold" in n for n in held):
            return notes + held  # sssd is not restarted while its unit is held
        if have and (want.get("sssdConf") != have.get("sssdConf") or want.get("krb5Conf") != have.get("krb5Conf")
                     or daemon.starts_at_boot(have.get("sssd")) and have.get("sssd") != "running"):
            notes.append("restart sssd (its configuration changes; no rejoin)")
        return notes + held

    # --- health -------------------------------------------------------------------------------

    def health(self, node: Node, desired: dict[str, dict[str, Desired]],
               observed: dict[str, dict[str, dict[str, Any]]]) -> HealthReport:
        """AD still accepts the membership (one `kinit -k` with the keytab's keys, adcli joins
        only; `adcli testjoin` when no KDC answered that), and the
        users and groups the manifest names resolve through NSS and sssd (one `getent` per
        database)."""
        out: dict[str, Health] = {}
        for name in desired.get(self.kind, {}):
            a = self.wanted.get(name)
            if a is None:
                continue
            early = self._asked.get(name)
            asked = early.wait() if early is not None else None
            users, groups = health.resolvable_names(a.spec)
            missing = asked[0] if asked is not None else self._unresolved(node, a)
            if not a.spec.joins():
                out[name] = health.names_health(a.spec.domain, missing, len(users) + len(groups))
                continue
            member = (observed.get(self.kind, {}).get(name) or {}).get("membership") or {}
            if (member.get("domain"), member.get("computerName")) != (a.spec.domain, a.computer):
                out[name] = Health.degraded("NotJoined", f"not joined to {a.spec.domain} as {a.computer}$")
                continue
            accepted, why = asked[1] if asked is not None else self._accepted(node, a)
            out[name] = health.join_health(accepted, why, a.computer, a.spec.domain, missing, len(users) + len(groups))
        return {self.kind: out}

    def prepare_health(self, node: Node) -> None:
        """The NSS lookups and the `kinit -k` need no observation: they start now, in the
        background, while the engine observes (health then judges them with what it saw)."""
        self._asked = {name: Background(lambda a=a: (self._unresolved(node, a),
                                                     self._accepted(node, a) if a.spec.joins() else (None, "")))
                       for name, a in self.wanted.items()}

    @staticmethod
    def _unresolved(node: Node, a: Artifacts) -> list[str]:
        users, groups = health.resolvable_names(a.spec)
        return health.unresolved(node, "passwd", users) + health.unresolved(node, "group", groups)

    def _accepted(self, node: Node, a: Artifacts) -> tuple[bool | None, str]:
        """Whether AD still accepts the join (None: could not tell), and why not."""
        try:
            return adcli.still_accepted(node, a.spec.domain, a.computer, self.paths.keytab,
                                        timeout=node.runner.default_timeout), ""
        except (ApplyError, CommandError) as err:
            return None, str(err)

    # --- apply: every change of the pass at once ----------------------------------------------------

    def apply(self, changes: list[Change], node: Node) -> Outcomes:
        outcomes: Outcomes = {}
        restart: list[bool] = []  # one sssd restart for the pass, flushing caches if a file changed
        # creates and updates first: a manifest renamed joins under the new name before the
        # old one is pruned (leave() then hands what the node shares to the new record)
        for change in sorted(changes, key=lambda c: c.action == "delete"):
            if node.stopping():
                outcomes[change.key] = Interrupted("not applied: the agent is stopping")
                continue
            try:
                if change.action == "delete":
                    self.leave(change.name, node)
                else:
                    restart.append(self._converge(change, node))
            except Exception as err:
                outcomes[change.key] = err
            else:
                outcomes[change.key] = None
        if restart:
            try:
                if any(restart) or daemon.status(self.paths.sssd_pid, self.paths.sssd_conf) != "running":
                    daemon.restart(node, self.paths.sssd_pid, flush_cache=any(restart), enforce=self.enforce)
                elif any(not daemon.starts_at_boot((c.observed or {}).get("sssd")) for c in changes):
                    daemon.enable(node, self.enforce)  # running, but not started at boot
            except Exception as err:
                for change in changes:
                    if change.action != "delete" and outcomes.get(change.key) is None:
                        outcomes[change.key] = err
        return outcomes

    def _converge(self, change: Change, node: Node) -> bool:
        """Files checked, membership, files installed → whether sssd must read them again."""
        a = self.wanted[change.name]
        have = change.observed or {}
        files.refuse_foreign(a, self.paths)
        # every secret is read before anything changes: a missing one changes nothing
        password = read_secret(a.spec.password, node) if a.state["membership"] and \
            a.state["membership"] != have.get("membership") else None
        values = {(s, k): read_secret(ref, node) for s, k, ref in sssd.secret_options(a.spec)}
        sockets = sssd.socket_activated(self.paths.sssd_wants) if systemd_running() else frozenset()
        final = sssd.render_sssd_conf(a.name, a.spec, a.computer, secret=self._secret_value(values, a.spec),
                                      sockets=sockets)
        problems = files.check(node, a, self.paths, sssd_conf=final if values or sockets else None)
        if problems:
            raise ApplyError("; ".join(problems))
        marker = self.read_markers(node).get(a.name) or {"name": a.name}
        if password is not None:
            marker = self.join(a, node, password, dict(have.get("membership") or {}), marker)
        changed = files.install(node, a, self.paths, final, self._marker_dir(node) / "krb5.conf.before")
        added = files.add_sss(node, self.paths)
        marker["nsswitchAdded"] = sorted(set(marker.get("nsswitchAdded", [])) | set(added))
        self._write_marker(node, marker)
        return changed["sssd.conf"] or changed["krb5.conf"]

    @staticmethod
    def _secret_value(values: dict[tuple[str, str], str], spec: Any) -> Any:
        by_ref = {ref: values[(s, k)] for s, k, ref in sssd.secret_options(spec)}
        return lambda ref: by_ref[ref]

    def join(self, a: Artifacts, node: Node, password: str, have: dict[str, Any],
             marker: dict[str, Any]) -> dict[str, Any]:
        """Join (or join again); a previous account of ours under another identity is
        deleted first, an account someone else made is never touched."""
        spec = a.spec
        if have.get("domain"):  # whether the account we may replace is still AD's
            have["valid"] = adcli.accepted(node, have["domain"], self.paths.keytab)
        ours = bool(marker.get("computerName")) and (marker.get("domain"), marker.get("computerName")) == \
            (have.get("domain"), have.get("computerName"))
        if have.get("domain") and (have.get("domain"), have.get("computerName")) != (spec.domain, a.computer):
            if not ours:
                raise ApplyError(
                    f"this node is joined to {have['domain']} as {have['computerName']}$ by something other than "
                    f"reconcile; leave that domain first (adcli delete-computer) so DomainJoin/{a.name} can join")
            if have.get("valid"):
                old_password = password if marker.get("domain") == spec.domain else \
                    read_secret(_secret_ref(marker), node)
                adcli.delete_computer(node, marker, old_password)
            # The old account's keys go too: adcli would leave them first in the keytab (the
            # next observe would see the old name) and skip host/<fqdn> keys it finds there.
            adcli.drop_keys(node, self.paths.keytab, marker)
        elif ours and have.get("valid") and marker.get("ou") != spec.ou:
            # adcli does not move an existing account: create it anew in the wanted OU
            adcli.delete_computer(node, marker, password)
        keytab_existed = self.paths.keytab.exists() if not ours else marker.get("keytabExisted", False)
        adcli.join(node, spec, a.computer, self.paths.keytab, password)
        marker = {
            "name": a.name, "domain": spec.domain, "computerName": a.computer, "ou": spec.ou,
            "user": spec.user, "password": spec.password.model_dump(exclude_none=True),
            "keytabExisted": keytab_existed, "nsswitchAdded": marker.get("nsswitchAdded", []),
            "joined": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._write_marker(node, marker)  # at once: from here on a prune knows what to delete
        return marker

    def _write_marker(self, node: Node, marker: dict[str, Any]) -> None:
        path = self._marker_dir(node) / f"{marker['name']}.json"
        AtomicWriter(node).write(path, json.dumps(marker, indent=1, sort_keys=True) + "\n", mode=0o600)

    # --- leave -------------------------------------------------------------------------------

    def leave(self, name: str, node: Node) -> None:
        """Leave the domain and remove, in reverse, what the join wrote. Each step is
        idempotent: a prune that failed halfway is simply run again.

        When another DomainJoin of this node still has a record (a manifest renamed: the
        new name joined before the old one is pruned), the node stays joined: only the old
        name's own files go, and what the node shares (account, keytab, sssd.conf, the
        nsswitch additions) is handed over to the other record."""
        markers = self.read_markers(node)
        marker = markers.pop(name, None)
        writer = AtomicWriter(node)
        heir = next(iter(markers.values()), None)
        if marker is None:
            # No record of the join (lost): the files reconcile wrote go (the sudo rule
            # above all); the membership stays, made outside reconcile as far as it knows
            # (explain says so: the account's password reference was in the record).
            if heir is None:
                self._leave_domain(node, {"name": name}, writer)
        elif heir is None:
            self._leave_domain(node, marker, writer)
        else:
            heir["nsswitchAdded"] = sorted(set(heir.get("nsswitchAdded", [])) | set(marker.get("nsswitchAdded", [])))
            heir["keytabExisted"] = bool(heir.get("keytabExisted")) and bool(marker.get("keytabExisted"))
            self._write_marker(node, heir)
        if GENERATED_HEADER in (read(self.paths.sudoers(name)) or ""):
            writer.remove(self.paths.sudoers(name))
        text = read(self.paths.pam_session)
        if text is not None and pam.pam_without_block(text, name) != text:
            writer.write(self.paths.pam_session, pam.pam_without_block(text, name))
        writer.remove(self._marker_dir(node) / f"{name}.json")

    def _leave_domain(self, node: Node, marker: dict[str, Any], writer: AtomicWriter) -> None:
        joined = bool(marker.get("computerName"))
        password = read_secret(_secret_ref(marker), node) if joined else ""  # before anything changes
        if joined:
            member = adcli.membership(node, self.paths.keytab, (marker["domain"], marker["computerName"]))
            if member and (member["domain"], member["computerName"]) == (marker["domain"], marker["computerName"]):
                if adcli.accepted(node, marker["domain"], self.paths.keytab):
                    adcli.delete_computer(node, marker, password)
        if GENERATED_HEADER in (read(self.paths.sssd_conf) or ""):
            daemon.stop(node, self.paths.sssd_pid)
            writer.remove(self.paths.sssd_conf)
            domain = marker.get("domain", "")
            for cache in self.paths.sssd_db.glob(f"*_{domain}.ldb"):
                writer.remove(cache)
            for cache in self.paths.sssd_db.glob(f"ccache_{domain.upper()}"):
                writer.remove(cache)
            for cache in self.paths.sssd_mc.glob("*"):  # libnss_sss reads these with sssd stopped
                if cache.is_file():
                    writer.remove(cache)
        files.release_krb5(writer, self.paths, self._marker_dir(node) / "krb5.conf.before")
        if marker.get("nsswitchAdded"):
            text = read(self.paths.nsswitch) or ""
            writer.write(self.paths.nsswitch, nsswitch.nsswitch_remove_sss(text, marker["nsswitchAdded"]))
        if not joined:
            return
        if not marker.get("keytabExisted"):
            writer.remove(self.paths.keytab)
        else:  # keep what was there before the join, without the account's keys
            adcli.drop_keys(node, self.paths.keytab, marker)


def _secret_ref(marker: dict[str, Any]) -> SecretRef:
    return SecretRef.model_validate(marker.get("password") or {})
