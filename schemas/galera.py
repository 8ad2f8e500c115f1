"""Galera: the MariaDB Galera settings of a Pacemaker Cluster's nodes, and who may bootstrap.

MariaDB itself runs under Pacemaker, as a promotable clone of `ocf:heartbeat:galera` (a
ClusterResource): the agent starts mysqld, recovers each node's last committed seqno and
promotes the cluster from the node that holds the most recent data. This kind writes what
the agent does not: each node's option file (`[mysqld]` bind address and `[galera]` wsrep
settings: provider, cluster name and address, the node's name and address, the state
transfer method and its credentials by secret reference), and it names the one node that
may start a NEW primary component.

Why the bootstrap node must be named: when no node has committed anything yet (a new
cluster), every node reports the same seqno and the agent bootstraps from the LAST node
listed in its `wsrep_cluster_address` (its tie-break). Reconcile therefore refuses a
galera ClusterResource unless a Galera manifest of its cluster names `bootstrap`, and
unless the resource's `wsrep_cluster_address` lists exactly the members with that node
last: the choice is written down in git, not left to list order. Once the cluster has
data the agent picks the highest seqno (or the node Galera marked safe_to_bootstrap at a
clean shutdown) and waits for every node to report first; that rule is the agent's and
is safe.
"""
import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.common import PATTERN_HELP, Manifest, Metadata, Name, NodeName, Placement, SecretRef, Strict

GALERA_AGENT = "ocf:heartbeat:galera"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"

OPTION = r"^[a-z](?:[a-z0-9_-]{0,78}[a-z0-9])?$"
OPTION_VALUE = r'^[^\s"\'\\](?:[^"\'\\]{0,253}[^\s"\'\\])?$'
Option = Annotated[str, StringConstraints(pattern=OPTION)]
"""A mysqld option name as in an option file (`innodb_buffer_pool_size`, `max-connections`)."""
OptionValue = Annotated[str, StringConstraints(pattern=OPTION_VALUE)]
"""One option value: no quote, no backslash, no leading or trailing blank (written quoted
when it holds anything but plain characters, so `#` or `;` inside is no comment)."""
PATTERN_HELP[OPTION] = "must be a mysqld option name: lower-case letters, digits, '_' and '-' (not last), at most 80"
PATTERN_HELP[OPTION_VALUE] = ("must be one option value: no quote, backslash or line break, no blank at either end, "
                              "at most 255")
SstUser = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,80}$")]

# Set by reconcile from typed fields: an option here would fight them.
TYPED = {
    "wsrep_on": "always ON", "wsrep_provider": "spec.provider", "wsrep_cluster_name": "metadata.name",
    "wsrep_cluster_address": "the Cluster's members", "wsrep_node_name": "the node's name",
    "wsrep_node_address": "the node's Cluster address", "wsrep_sst_method": "spec.sst.method",
    "wsrep_sst_auth": "spec.sst.user and spec.sst.password", "bind_address": "spec.bindAddress",
}
# Options that make mysqld run a program or load code: refused (no node policy covers them yet).
RUNS_CODE = {"wsrep_notify_cmd", "plugin_load", "plugin_load_add", "init_file", "init_connect", "init_slave",
             "wsrep_sst_donor", "plugin_dir", "wsrep_provider_options_file"}


def option_key(name: str) -> str:
    """mysqld treats `-` and `_` in option names alike."""
    return name.replace("-", "_")


class GaleraMetadata(Metadata):
    """The Galera cluster's name: its wsrep_cluster_name."""

    name: Name = Field(description="The Galera cluster's name, written as wsrep_cluster_name (a DNS label).")


class StateTransfer(Strict):
    """How a joining node gets the data (SST): rsync needs no account; mariabackup logs in to the donor."""

    method: Literal["rsync", "mariabackup"] = Field("rsync", description="rsync (blocks the donor while it "
                                                   "copies) or mariabackup (needs the mariadb-backup package and "
                                                   "an account: user and password).")
    user: SstUser | None = Field(None, description="The donor's account for mariabackup.")
    password: SecretRef | None = Field(None, description="Its password, by reference only ({file:} or {env:}); "
                                       "written into the option file, which is then 0640 root:mysql.")

    @model_validator(mode="after")
    def _account(self) -> "StateTransfer":
        if self.method == "mariabackup" and (self.user is None or self.password is None):
            raise ValueError("mariabackup state transfers need user and password (by reference)")
        if self.method == "rsync" and (self.user is not None or self.password is not None):
            raise ValueError("rsync state transfers take no user or password")
        return self


class GaleraSpec(Placement):
    """The Galera settings of every node of a Pacemaker Cluster, and the one node that may
    start a new cluster."""

    bootstrap: NodeName = Field(description="The only node that may start a NEW primary component (a cluster "
                                "that has never committed anything). It must be a member, and the galera "
                                "ClusterResource's wsrep_cluster_address must list it last.")
    provider: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./-]{1,200}\.so$")] = Field(
        PROVIDER, description="The wsrep provider library (galera-4's).")
    bindAddress: Literal["node", "any"] = Field("node", description="node: mysqld listens on the node's Cluster "
                                                "address only (so HAProxy may listen on other addresses of the "
                                                "node); any: on every address.")
    sst: StateTransfer = Field(default_factory=StateTransfer, description="How joining nodes get the data.")
    settings: dict[Option, OptionValue] = Field(
        default_factory=dict, description="Other [mysqld] options (name → value), e.g. innodb_buffer_pool_size; "
        "not those reconcile sets from typed fields, nor ones that run programs.")

    @model_validator(mode="after")
    def _cluster(self) -> "GaleraSpec":
        if self.cluster is None:
            raise ValueError("a Galera needs spec.cluster: its members are that Pacemaker Cluster's nodes, "
                             "and Pacemaker's galera agent runs MariaDB")
        return self


class Galera(Manifest):
    kind: Literal["Galera"]
    metadata: GaleraMetadata  # type: ignore[assignment]
    spec: GaleraSpec

    def check(self, tree) -> list[tuple[str, str]]:
        members = list(tree.cluster_nodes(self.spec.cluster))
        problems = settings_problems(self.spec.settings)
        if members and self.spec.bootstrap not in members:
            problems.append(("spec.bootstrap", f"node {self.spec.bootstrap!r} is not a member of cluster "
                             f"{self.spec.cluster!r} ({', '.join(members)})"))
        others = [g.metadata.name for g in tree.memo(galeras_by_cluster).get(self.spec.cluster, []) if g is not self]
        if others:
            problems.append(("spec.cluster", f"cluster {self.spec.cluster!r} already has Galera {others[0]!r}: "
                             "one Galera cluster per Pacemaker Cluster"))
        return problems


def settings_problems(settings: dict[str, str]) -> list[tuple[str, str]]:
    """Options that fight a typed field, run code, or repeat another under its other spelling."""
    problems, seen = [], {}
    for name in settings:
        key, field = option_key(name), f"spec.settings.{name}"
        if key in TYPED:
            problems.append((field, f"reconcile sets {name} from {TYPED[key]}"))
        elif key in RUNS_CODE:
            problems.append((field, f"{name} makes mysqld run a program or load code; not accepted in settings"))
        elif key in seen:
            problems.append((field, f"{name} and {seen[key]} are one option to mysqld"))
        seen[key] = name
    return problems


def galeras_by_cluster(tree) -> dict[str, list[Galera]]:
    """Index for whole-tree checks (built once per tree with tree.memo)."""
    out: dict[str, list[Galera]] = {}
    for g in tree.of_kind("Galera"):
        out.setdefault(g.spec.cluster, []).append(g)
    return out


def cluster_address(members: list[str], bootstrap: str) -> str:
    """The wsrep_cluster_address that lets only `bootstrap` start a new cluster: it goes last."""
    return "gcomm://" + ",".join([m for m in members if m != bootstrap] + [bootstrap])


def check_galera_resource(params: dict, cluster: str, tree) -> list[tuple[str, str]]:
    """Problems of an `ocf:heartbeat:galera` ClusterResource (its params as name → value):
    its cluster must have a Galera manifest naming the bootstrap node, and its
    wsrep_cluster_address must list exactly the members with that node last."""
    galeras = tree.memo(galeras_by_cluster).get(cluster, [])
    if not galeras:
        return [("spec.agent", f"a galera resource needs a Galera manifest for cluster {cluster!r} that names the "
                 "node that may bootstrap a new cluster (spec.bootstrap): without it the agent would pick "
                 "whichever node is listed last")]
    galera = galeras[0]
    members = list(tree.cluster_nodes(cluster))
    want = cluster_address(members, galera.spec.bootstrap)
    have = params.get("wsrep_cluster_address")
    if not isinstance(have, str):
        return [("spec.params.wsrep_cluster_address", f"required by the galera agent: give {want}")]
    listed = [h.strip() for h in re.sub(r"^gcomm://", "", have).split(",") if h.strip()]
    if not have.startswith("gcomm://") or sorted(listed) != sorted(members):
        return [("spec.params.wsrep_cluster_address", f"{have}: must list the members of cluster {cluster!r} by "
                 f"their node names: {want}")]
    if listed[-1] != galera.spec.bootstrap:
        return [("spec.params.wsrep_cluster_address", f"{have}: Galera {galera.metadata.name!r} names "
                 f"{galera.spec.bootstrap} as the node that may bootstrap, and the agent bootstraps a new cluster "
                 f"from the last node listed: {want}")]
    return []


__all__ = ["Galera", "GaleraSpec", "GALERA_AGENT", "check_galera_resource", "cluster_address", "option_key"]
