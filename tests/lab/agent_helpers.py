"""What the agent's lab tests share: the operator's git identity and a freezer that stops
the agent (SIGSTOP) the instant it creates a temp file of keepalived.conf."""
from __future__ import annotations

GIT_ENV = {"GIT_AUTHOR_NAME": "Operator", "GIT_AUTHOR_EMAIL": "ops@example.test", "GIT_COMMITTER_NAME": "Operator",
           "GIT_COMMITTER_EMAIL": "ops@example.test", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
# Runs in the node: freeze the agent (SIGSTOP, PID in argv) as soon as it creates a temp
# file of keepalived.conf in /etc/keepalived (raw inotify, no delay); print the file's name.
FREEZE_ON_TEMP_FILE = r"""
import ctypes, os, signal, struct, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
fd = libc.inotify_init()
if fd < 0 or libc.inotify_add_watch(fd, b"/etc/keepalived", 0x100) < 0:  # IN_CREATE
    sys.exit("inotify failed")
print("watching", flush=True)
while True:
    data, off = os.read(fd, 65536), 0
    while off < len(data):
        _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, off)
        name = data[off + 16: off + 16 + size].rstrip(b"\0").decode()
        off += 16 + size
        if name.startswith(".keepalived.conf."):
            os.kill(int(sys.argv[1]), signal.SIGSTOP)
            print(name, flush=True)
            sys.exit(0)
"""
