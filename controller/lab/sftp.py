"""The lab's SFTP server (a lab started with sftp=True): sshd in the last lb node, SFTP only.

A file server for the Mount examples and tests, as dc1 is the domain controller for the
DomainJoin ones. The server node runs OpenSSH's sshd (Debian's package, started directly:
the host never runs it) on its lab address only, with `ForceCommand internal-sftp` for
one user, `files`, who logs in with a password or a key. Every node gets what a client of
that server needs: the server's host key in /etc/ssh/ssh_known_hosts, the client key and
the password in 0600 files at the paths the example manifests reference (lab fixtures,
not secrets: the server exists only inside the lab).

The keys are made per lab with ssh-keygen, in the lab's folder on the host.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from controller.lab import config
from controller.lab.lab import LabError

if TYPE_CHECKING:
    from controller.lab.lab import Lab

SSHD_DIR = "/etc/ssh/reconcile-lab-sftp"


def server_node(nodes: list[str]) -> str:
    """The node serving SFTP: the last lb node (lb2 in a two-node lab)."""
    return [n for n in nodes if n.startswith("lb")][-1]


def make_keys(folder: Path) -> None:
    """A host key for the server and a key pair for the clients (ed25519, no passphrase)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        if not (folder / name).exists():
            r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"reconcile-lab {name}",
                                "-f", str(folder / name)], capture_output=True, text=True, timeout=30)
            if r.returncode:
                raise LabError(f"ssh-keygen failed: {r.stderr.strip()}")


def public(folder: Path, name: str) -> str:
    """`type base64` of a public key (the comment dropped)."""
    return " ".join((folder / f"{name}.pub").read_text().split()[:2])


def client_files(folder: Path, server: str, address: str) -> dict[str, tuple[str, int]]:
    """Files every node gets: {path: (content, mode)}."""
    return {
        "/etc/ssh/ssh_known_hosts": (f"{server},{address} {public(folder, 'host_key')}\n", 0o644),
        config.SFTP_KEY_FILE: ((folder / "client_key").read_text(), 0o600),
        config.SFTP_PASSWORD_FILE: (config.SFTP_PASSWORD, 0o600),
    }


def sshd_config(address: str) -> str:
    return "\n".join([
        "# lab SFTP server (controller/lab/sftp.py): SFTP only, one user",
        f"ListenAddress {address}", f"HostKey {SSHD_DIR}/host_key", "PidFile /run/sshd-sftp.pid",
        f"AllowUsers {config.SFTP_USER}", "PermitRootLogin no", "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no", "UsePAM no", "Subsystem sftp internal-sftp",
        "ForceCommand internal-sftp", "AllowTcpForwarding no", "X11Forwarding no", "PermitTTY no", "",
    ])


def start(lab: Lab, folder: Path, timeout: float = 30.0) -> None:
    """Create the user and its folder, start sshd in the server node, wait until it answers."""
    node = server_node(lab.nodes)
    address, user = lab.address(node), config.SFTP_USER
    home = f"/home/{user}"
    lab.exec(node, ["useradd", "-m", "-s", "/usr/sbin/nologin", user])
    lab.exec(node, ["chpasswd"], input=f"{user}:{config.SFTP_PASSWORD}\n")
    lab.write_file(node, f"{home}/.ssh/authorized_keys", public(folder, "client_key") + "\n", mode=0o600)
    lab.write_file(node, f"{home}/{config.SFTP_FOLDER}/README.txt",
                   f"Served over SFTP by {node} ({address}) for the Mount examples.\n", mode=0o644)
    lab.exec(node, ["chown", "-R", f"{user}:{user}", f"{home}/.ssh", f"{home}/{config.SFTP_FOLDER}"])
    lab.exec(node, ["chmod", "700", f"{home}/.ssh"])
    lab.write_file(node, f"{SSHD_DIR}/host_key", (folder / "host_key").read_text(), mode=0o600)
    lab.write_file(node, f"{SSHD_DIR}/sshd_config", sshd_config(address), mode=0o644)
    lab.exec(node, ["mkdir", "-p", "/run/sshd"])  # sshd's privilege separation folder
    lab.exec(node, ["/usr/sbin/sshd", "-t", "-f", f"{SSHD_DIR}/sshd_config"])
    lab.exec(node, ["/usr/sbin/sshd", "-f", f"{SSHD_DIR}/sshd_config", "-E", "/var/log/sshd-sftp.log"])
    lab.wait_tcp(node, address, 22, timeout=timeout)
