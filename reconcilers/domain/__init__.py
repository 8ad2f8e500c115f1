"""Domain membership (the DomainJoin kind): sssd, Kerberos, PAM, sudo, nsswitch, adcli.

Modules (each reads in one sitting):

- `sssd`       — sssd.conf: read as sssd reads it, rendered from a DomainJoin, `sssctl` check;
                 quoting: `sssd_value`, `sssd_list`, `sssd_section`
- `krb5`       — /etc/krb5.conf: rendered, read back, checked by MIT Kerberos; `krb5_value`
- `sudoers`    — the sudo rules, `visudo -c`; quoting: `sudoers_escape`, `sudoers_command`
- `pam`        — the pam_mkhomedir line in common-session; quoting: `pam_argument`
- `nsswitch`   — `sss` on the passwd, group and shadow lines
- `adcli`      — the computer account: join, testjoin, delete, its keys in the keytab
- `keytab`     — the keytab file format (list and drop principals)
- `daemon`     — sssd, the process: status, one restart per pass
- `files`      — the join's files as one artifact set: render, check, install once
- `reconciler` — the DomainJoin reconciler: observe, desired, apply
- `importer`   — sssd.conf (+ sudoers, krb5.conf) → a DomainJoin (`reconcile import domain`)
"""
