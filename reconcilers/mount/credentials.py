"""The files a mount's tool reads its credentials and host keys from, in the mount's own 0700
folder (/etc/reconcile/mount/NAME): an rclone config, an ssh identity, a cifs credentials
file (each 0600), and known_hosts lines (0644).

Secrets are read at apply time from their references and compared here; only the token
"<secret: in sync>" or "<secret: differs>" leaves this module.

rclone's config cannot be compared byte for byte: rclone obscures passwords with a random
nonce, and rewrites its config itself when it refreshes an OAuth token. So reconcile keeps
a sha256 of what it rendered the config from (type, plain options, the secrets as given)
beside it, and the config is in sync when that digest matches today's secrets and the
config still holds the plain options reconcile wrote (rclone may add keys of its own). A
refreshed token is not drift; a rotated secret is.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from reconcilers.base import ApplyError, AtomicWriter, Node, read_secret
from reconcilers.mount import fuse
from reconcilers.mount.model import SECRET_DIFFERS, SECRET_IN_SYNC, Paths
from reconcilers.mount.render import cifs_credentials, known_hosts, parse_rclone_conf, rclone_conf
from schemas.mount import MountSpec

def plain_values(name: str, spec: MountSpec, paths: Paths) -> dict[str, str]:
    """The remote's options that are not secret, with reconcile's defaults: an sftp remote
    always checks the server's host key (rclone skips the check without known_hosts_file)."""
    values = dict(spec.rclone.remote.options)
    if spec.rclone.remote.type == "sftp" and "known_hosts_file" not in values:
        values["known_hosts_file"] = str(paths.host_keys(name) if spec.rclone.hostKeys else paths.known_hosts)
    return values


def _secrets(spec: MountSpec, node: Node) -> dict[str, str]:
    return {k: fuse.config_value(k, read_secret(ref, node)) for k, ref in spec.rclone.remote.secrets.items()}


def _digest(spec: MountSpec, plain: dict[str, str], secrets: dict[str, str]) -> str:
    data = json.dumps({"type": spec.rclone.remote.type, "options": plain, "secrets": secrets}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def rclone_in_sync(name: str, spec: MountSpec, paths: Paths, node: Node) -> bool:
    try:
        text = paths.rclone_conf(name).read_text()
        digest = paths.digest(name).read_text().strip()
        mode = paths.rclone_conf(name).stat().st_mode & 0o777
    except OSError:
        return False
    plain = plain_values(name, spec, paths)
    section = parse_rclone_conf(text).get(name)
    if section is None or mode != 0o600 or section.get("type") != spec.rclone.remote.type:
        return False
    # rclone adds keys of its own (an sftp remote's detected shell_type, md5sum_command):
    # only the keys reconcile wrote are compared.
    if any(section.get(k) != v for k, v in plain.items()) or set(spec.rclone.remote.secrets) - set(section):
        return False
    return digest == _digest(spec, plain, _secrets(spec, node))


def render_rclone(name: str, spec: MountSpec, paths: Paths, node: Node) -> tuple[str, str]:
    """(config text, digest). rclone's password options are obscured (`rclone obscure -`)."""
    plain, secrets = plain_values(name, spec, paths), _secrets(spec, node)
    values = dict(plain)
    for key, value in secrets.items():
        values[key] = fuse.obscure(node, value) if fuse.is_password(spec, key, node) else value
    text = rclone_conf(name, spec.rclone.remote.type, values, frozenset(secrets))
    return text, _digest(spec, plain, secrets)


def identity(spec: MountSpec, node: Node) -> str:
    key = read_secret(spec.sshfs.identity, node).strip().replace("\r", "")
    if "PRIVATE KEY" not in key:
        raise ApplyError(f"the secret {spec.sshfs.identity.describe()} (spec.sshfs.identity) is not a private key "
                         "in OpenSSH/PEM form")
    return key + "\n"


def cifs_file(spec: MountSpec, node: Node) -> str:
    password = read_secret(spec.cifs.password, node)
    if "\n" in password:
        raise ApplyError(f"the secret {spec.cifs.password.describe()} (spec.cifs.password) must be one line")
    return cifs_credentials(spec.cifs.user, password, spec.cifs.domain)


def _same(path: Path, content: str, mode: int) -> bool:
    try:
        return path.read_text() == content and path.stat().st_mode & 0o777 == mode
    except OSError:
        return False


def credentials_state(name: str, spec: MountSpec, paths: Paths, node: Node) -> str:
    """SECRET_IN_SYNC when the files the tool reads hold today's secrets (read-only)."""
    try:
        if spec.type == "rclone":
            ok = rclone_in_sync(name, spec, paths, node)
        elif spec.type == "sshfs":
            ok = _same(paths.identity(name), identity(spec, node), 0o600)
        elif spec.type == "cifs":
            ok = _same(paths.cifs_credentials(name), cifs_file(spec, node), 0o600)
        else:
            return SECRET_IN_SYNC
    except ApplyError:
        return SECRET_DIFFERS  # apply says why
    return SECRET_IN_SYNC if ok else SECRET_DIFFERS


def host_keys(spec: MountSpec) -> list[str]:
    block = spec.rclone if spec.type == "rclone" else spec.sshfs if spec.type == "sshfs" else None
    return list(block.hostKeys) if block is not None else []


def written_host_keys(name: str, paths: Paths) -> list[str]:
    try:
        return [" ".join(line.split()[1:3]) for line in paths.host_keys(name).read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _server(spec: MountSpec) -> tuple[str, int]:
    if spec.type == "sshfs":
        return spec.sshfs.host, spec.sshfs.port
    opts = spec.rclone.remote.options
    return opts.get("host", ""), int(opts.get("port", "22") or 22)


def install(name: str, spec: MountSpec, paths: Paths, node: Node) -> bool:
    """Write what the tool reads; True when a credential or host key changed (the running
    mount still uses the old ones: the caller remounts)."""
    writer, folder, changed = AtomicWriter(node), paths.folder(name), False
    if spec.type in ("sshfs", "cifs", "rclone") or host_keys(spec):
        if not folder.is_dir():
            node.runner.guard("mkdir", [str(folder)], read_only=False)
            folder.mkdir(mode=0o700, parents=True)
        folder.chmod(0o700)
    elif not folder.exists():
        return False
    wanted: set[Path] = set()
    if spec.type == "rclone":
        wanted |= {paths.rclone_conf(name), paths.digest(name)}
        if not rclone_in_sync(name, spec, paths, node):
            text, digest = render_rclone(name, spec, paths, node)
            writer.write(paths.rclone_conf(name), text, mode=0o600)
            writer.write(paths.digest(name), digest + "\n", mode=0o600)
            changed = True
    elif spec.type == "sshfs":
        wanted.add(paths.identity(name))
        changed |= writer.write(paths.identity(name), identity(spec, node), mode=0o600)
    elif spec.type == "cifs":
        wanted.add(paths.cifs_credentials(name))
        changed |= writer.write(paths.cifs_credentials(name), cifs_file(spec, node), mode=0o600)
    keys = host_keys(spec)
    if keys:
        wanted.add(paths.host_keys(name))
        host, port = _server(spec)
        changed |= writer.write(paths.host_keys(name), known_hosts(host, port, keys), mode=0o644)
    for stale in folder.iterdir():
        if stale not in wanted and not stale.name.startswith("."):
            writer.remove(stale)
            changed = True
    if not wanted:
        folder.rmdir()
    return changed


def remove(name: str, paths: Paths, node: Node) -> None:
    """Delete the mount's folder (credentials included) and its rclone cache."""
    for folder in (paths.folder(name), paths.cache / name):
        if folder.exists():
            node.runner.guard("remove", [str(folder)], read_only=False)
            shutil.rmtree(folder)
