"""The Galera option file: what one node gets, rendered from the manifest (pure).

MariaDB's option files are INI-like: `[group]` headers, `name = value` lines, `#`/`;`
comments. A value is written bare when it is plain characters, else in double quotes (so
that `#` or `;` inside it is no comment); `mycnf_value` refuses what could not be written
as one value at all (quotes, backslashes, line breaks) — the schema refuses them first.
"""
from __future__ import annotations

import re

from reconcilers.base import GENERATED_HEADER, UnsafeValue, one_line
from schemas.galera import GaleraSpec, cluster_address

PATH = "/etc/mysql/mariadb.conf.d/62-reconcile-galera.cnf"
"""After Debian's 50-server.cnf (bind-address 127.0.0.1) and 60-galera.cnf (all commented),
so its settings win; a file of its own, so the package's files are never touched."""
SECRET_IN_SYNC = "<secret: in sync>"
SECRET_DIFFERS = "<secret: differs>"
_BARE = re.compile(r"^[A-Za-z0-9_.:,/@+=%*-]+$")


def mycnf_value(value: str, where: str) -> str:
    """`value` as one option-file value: bare if plain, else double-quoted. Raises UnsafeValue."""
    one_line(value, where)
    if _BARE.match(value):
        return value
    if any(c in value for c in "\"'\\") or value != value.strip() or not value:
        raise UnsafeValue(f"{where}: refused to write {value!r}: quotes, backslashes and outer blanks cannot be "
                          "written as one option value")
    return f'"{value}"'


def header(name: str) -> str:
    return f"# Galera {name}: {GENERATED_HEADER}"


def lines(name: str, spec: GaleraSpec, node: str, members: dict[str, str], auth: str) -> list[str]:
    """The file's lines for `node`; `auth` stands for the SST account's `user:password`
    (the real one when writing, a token in desired/observed state)."""
    address = members[node].split("/")[0]
    out = [header(name), "[mysqld]"]
    if spec.bindAddress == "node":
        out.append(f"bind_address = {mycnf_value(address, 'bind_address')}")
    # What Galera needs of every node (MariaDB's "Configuring MariaDB Galera Cluster").
    out += ["binlog_format = ROW", "default_storage_engine = InnoDB", "innodb_autoinc_lock_mode = 2"]
    out += [f"{k} = {mycnf_value(v, k)}" for k, v in spec.settings.items()]
    out += [
        "[galera]",
        "wsrep_on = ON",
        f"wsrep_provider = {mycnf_value(spec.provider, 'wsrep_provider')}",
        f"wsrep_cluster_name = {mycnf_value(name, 'wsrep_cluster_name')}",
        f"wsrep_cluster_address = {mycnf_value(cluster_address(list(members), spec.bootstrap), 'wsrep_cluster_address')}",
        f"wsrep_node_name = {mycnf_value(node, 'wsrep_node_name')}",
        f"wsrep_node_address = {mycnf_value(address, 'wsrep_node_address')}",
        f"wsrep_sst_method = {spec.sst.method}",
    ]
    if spec.sst.method == "mariabackup":
        out.append(f"wsrep_sst_auth = {auth}")
    return out


def text(found: list[str]) -> str:
    return "\n".join(found) + "\n"


def sst_auth(spec: GaleraSpec, password: str) -> str:
    return mycnf_value(f"{spec.sst.user}:{password}", "wsrep_sst_auth")


def mask_auth(found: list[str], real: str | None) -> list[str]:
    """The file's lines with the SST account replaced by a token saying whether it is the
    desired one (`real`): secrets never leave the reconciler."""
    out = []
    for line in found:
        if line.startswith("wsrep_sst_auth"):
            value = line.split("=", 1)[1].strip() if "=" in line else ""
            line = f"wsrep_sst_auth = {SECRET_IN_SYNC if real is not None and value == real else SECRET_DIFFERS}"
        out.append(line)
    return out
