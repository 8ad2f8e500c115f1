"""HAProxy: Frontends and Backends on one node, reconciled by one owner of haproxy.cfg.

Modules, each read in one sitting:

- `config`: the managed file: where it lives, its sections, composing a new one;
- `render`: manifests → normalized state → section lines;
- `parse`: sections of the file and the runtime's answers → normalized state;
- `runtime`: the admin socket and master CLI, their answers, which server changes need
  no reload;
- `process`: `haproxy -c` with refusals pinned on sections, install, start, reload;
- `watch`: drift of the file or of server state, not reconcile's own writes;
- `reconciler`: observe, desired, apply — a pass's changes at once: one render, one
  check, one install, one runtime-API session and at most one reload.
"""
