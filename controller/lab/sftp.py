"""The lab's SFTP server (a lab started with sftp=True): sshd in the last lb node, SFTP only.

A file server for the Mount examples and tests, as dc1 is the domain controller for the
DomainJoin ones. The server node runs OpenSSH's sshd (Debian's package; the host never runs
it) on its lab address only, with `ForceCommand internal-sftp` for one user, `files`, who
logs in with a password or a key. Every node gets what a client of that server needs: the
server's host key in /etc/ssh/ssh_known_hosts, the client key and the password in 0600
files at the paths the example manifests reference (lab fixtures, not secrets: the server
exists only inside the lab).

How sshd runs depends on the node: an init-less node starts it directly (it detaches and
logs to /var/log/sshd-sftp.log); a systemd node runs it as a unit of its own systemd,
`reconcile-lab-sftp.service` (Type=notify, logs in the node's journal), so that nothing in
the node runs outside a unit. Not Debian's ssh.service: the node masks it (the host enables
it, and /etc/ssh/sshd_not_to_be_run, which keeps it from running on the host, is the host's
file seen through the node's lower layer); the lab's unit has its own configuration and
leaves both alone.

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
UNIT = "reconcile-lab-sftp.service"


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


def unit(address: str) -> str:
    """The server as a systemd service (on a systemd node), shaped like Debian's ssh.service."""
    return "\n".join([
        "# lab SFTP server (controller/lab/sftp.py), in a lab node only", "[Unit]",
        f"Description=SFTP server of the lab for user {config.SFTP_USER} on {address}", "After=network.target", "",
        "[Service]", "Type=notify", f"ExecStartPre=/usr/sbin/sshd -t -f {SSHD_DIR}/sshd_config",
        f"ExecStart=/usr/sbin/sshd -D -f {SSHD_DIR}/sshd_config", "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure", "RuntimeDirectory=sshd", "RuntimeDirectoryMode=0755", "",
        "[Install]", "WantedBy=multi-user.target", "",
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
    if lab.init(node) == "systemd":
        lab.write_file(node, f"/etc/systemd/system/{UNIT}", unit(address), mode=0o644)
        lab.exec(node, ["systemctl", "daemon-reload"])
        lab.exec(node, ["systemctl", "enable", "--now", UNIT], timeout=timeout)  # returns once sshd is READY
    else:
        lab.exec(node, ["mkdir", "-p", "/run/sshd"])  # sshd's privilege separation folder
        lab.exec(node, ["/usr/sbin/sshd", "-t", "-f", f"{SSHD_DIR}/sshd_config"])
        lab.exec(node, ["/usr/sbin/sshd", "-f", f"{SSHD_DIR}/sshd_config", "-E", "/var/log/sshd-sftp.log"])
    lab.wait_tcp(node, address, 22, timeout=timeout)
