"""HAProxy: the HAProxy kind, Frontends and Backends on one node, reconciled by one owner
of haproxy.cfg and its process.

Modules, each read in one sitting (the language's own rules live in schemas/haproxy_lang.py,
shared with the schemas):

- `config`: the managed file: where it lives, its sections, composing a new one, and
  `haproxy_word`, the one quoting function for values written into a line;
- `render`: manifests → sections of lines, and the files they refer to;
- `parse`: sections and the runtime's answers → the normalized state the plan diffs;
- `state`: every object of the node rendered (`Model`), desired and observed states;
- `runtime`: the admin socket and master CLI, their answers, which server changes need
  no reload;
- `files`: certificates (replaced at run time), secret files, map and ACL files;
- `process`: `haproxy -c` with refusals pinned on sections, install, start, reload;
- `watch`: drift of the file or of server state, not reconcile's own writes;
- `importer`: `reconcile import haproxy`: a haproxy.cfg as manifests;
- `health`: frontends listening, servers as HAProxy's checks see them (one `show stat`);
- `reconciler`: observe, desired, apply — a pass's changes at once: one render, one
  check, one install, one runtime-API session and at most one reload — and health.
"""
