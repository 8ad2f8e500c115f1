"""keepalived: the Keepalived, VirtualIP (manager: keepalived) and VirtualServer kinds.

One reconciler owns the three kinds because they share one file and one daemon. Modules,
each read in one sitting:

- conf.py        the language: parse keepalived.conf into statements, write them back,
                 `keepalived_word` (the one quoting function of the format)
- model.py       what a file says: plan state per object (`state_of`), instance facts
- render.py      manifests → each object's section of one node's file (pure)
- check.py       `keepalived -t` on a rendering, refusals pinned on the objects
- daemon.py      the local keepalived: dump, check, start, reload, stop
- vrrp.py        what runs: JSON dump, `ip -j addr`, VRRP adverts heard on the wire
- guard.py       the split-brain guard and the repair of a master's missing address
- files.py       scripts shipped from git, below /etc/keepalived/reconcile
- health.py      VIPs held once, keepalived working, virtual servers in IPVS (pure judges)
- reconciler.py  observe, desired, validate, health, render, drain, apply, watch
- drain.py       drain/undrain/drained: move the addresses away without a reload
- importer.py    `reconcile import keepalived FILE|--live` (reconcilers/importing.py's interface)
- fidelity.py    the round-trip rule, measured (bench/bench_import.py --tool keepalived)

Shared with others: the node policy (reconcilers/policy.py, section `keepalived`: programs,
notify scripts, includes and written files need the node's consent; capabilities in
schemas/keepalived.py CAPABILITIES) and the link probes (reconcilers/netprobe.py, also
Pacemaker's IPaddr2 health).
"""
