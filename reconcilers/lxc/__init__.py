"""LXC containers (the Container kind): one package, modules that each read in one sitting.

- `config`     — LXC's config language: parse as LXC reads it, the quoting functions
                 (`lxc_value`, `lxc_init_cmd`, `lxc_comment`), reconcile's marked block
- `model`      — the normalized state: manifest → state, config file → state, state → keys
- `network`    — the node's side: bridges (made node-local when the manifest says so)
- `rootfs`     — the root file system, files written into it without following a symlink
- `tools`      — lxc-ls, lxc-info, lxc-start, lxc-stop: parsed, and LXC's own config check
- `placed`     — containers Pacemaker places, and the interface to reconcilers/pacemaker
- `reconciler` — the Container reconciler: observe, desired, apply

What reconcilers/pacemaker may use (the lxc primitive of a Pacemaker-placed container):
`config_path(lxc_path, name)` — the config file the primitive's `config` parameter names —
and `stop_seconds(spec)` — how long a stop waits, in seconds. Nothing else.
"""
from reconcilers.lxc.config import config_path  # noqa: F401  (the interface above)
from reconcilers.lxc.model import stop_seconds  # noqa: F401
