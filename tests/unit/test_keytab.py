"""The keytab reader/filter, on a keytab adcli wrote in a lab node (tests/fixtures/ad/
keytab-renamed.bin: joined as OLDNAME, then as NEWNAME, the way reconcile did before issue
22; both accounts were deleted from the lab's AD again, so the keys are dead), and what
DomainJoin does with it on a rename."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconcilers.domain import keytab
from reconcilers.base import Node, Runner
from reconcilers.domain.adcli import drop_keys, parse_keytab_list
from reconcilers.domain.files import Paths

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ad"
RENAMED = (FIXTURES / "keytab-renamed.bin").read_bytes()
REALM = "CORP.EXAMPLE.TEST"
OLD = {f"OLDNAME$@{REALM}", f"host/OLDNAME@{REALM}", f"RestrictedKrbHost/OLDNAME@{REALM}",
       f"host/lb1.corp.example.test@{REALM}", f"RestrictedKrbHost/lb1.corp.example.test@{REALM}"}
NEW = {f"NEWNAME$@{REALM}", f"host/NEWNAME@{REALM}", f"RestrictedKrbHost/NEWNAME@{REALM}"}


def test_the_principals_are_those_klist_lists_in_its_order():
    klist = [line.split()[1] for line in (FIXTURES / "klist-renamed.txt").read_text().splitlines()[3:]]
    assert keytab.principals(RENAMED) == klist
    assert set(klist) == OLD | NEW


def test_dropping_an_old_computer_keeps_every_other_entry_byte_for_byte():
    belongs = keytab.machine_account_principals("OLDNAME", REALM, {"lb1.corp.example.test", "lb1"})
    kept = keytab.without(RENAMED, belongs)
    assert set(keytab.principals(kept)) == NEW
    assert len(keytab.principals(kept)) == 9  # three keys each
    assert kept[2:] in RENAMED  # the new account's records are the tail of the file, unchanged
    assert keytab.without(RENAMED, lambda p: False) == RENAMED


def test_other_realms_and_services_are_not_the_computers():
    belongs = keytab.machine_account_principals("LB1", REALM, {"lb1.corp.example.test"})
    assert belongs(f"LB1$@{REALM}") and belongs(f"host/lb1@{REALM}") and belongs(f"host/LB1.corp.example.test@{REALM}")
    assert not belongs("LB1$@OTHER.TEST") and not belongs(f"HTTP/lb1.corp.example.test@{REALM}")
    assert not belongs(f"LB10$@{REALM}") and not belongs(f"alice@{REALM}")


@pytest.mark.parametrize("data", [b"", b"\x05\x01", RENAMED[:-3], RENAMED[:5]])
def test_a_keytab_it_cannot_read_is_an_error_not_a_guess(data):
    with pytest.raises(keytab.KeytabError):
        keytab.without(data, lambda p: True)


def test_several_machine_principals_read_as_the_recorded_one():
    listing = (FIXTURES / "klist-renamed.txt").read_text()
    assert parse_keytab_list(listing) == ("corp.example.test", "OLDNAME")
    assert parse_keytab_list(listing, ("corp.example.test", "NEWNAME")) == ("corp.example.test", "NEWNAME")
    assert parse_keytab_list(listing, ("corp.example.test", "GONE")) == ("corp.example.test", "OLDNAME")


def test_a_rename_drops_the_old_accounts_keys_and_klist_reads_the_result(tmp_path):
    paths = Paths(keytab=tmp_path / "krb5.keytab")
    shutil.copy(FIXTURES / "keytab-renamed.bin", paths.keytab)
    node = Node("lb1", Runner(recording=True), tmp_path / "state")
    marker = {"name": "corp", "domain": "corp.example.test", "computerName": "OLDNAME", "keytabExisted": False}
    lb1 = {"lb1.corp.example.test", "lb1"}  # the host the fixture was recorded on
    drop_keys(node, paths.keytab, marker, lb1)
    left = set(keytab.principals(paths.keytab.read_bytes()))
    assert left == NEW
    assert [r.argv[:2] for r in node.runner.records if r.what == "exec"] == [["klist", "-k"]]  # checked the temp file
    assert oct(paths.keytab.stat().st_mode & 0o777) == "0o600"

    # the last machine account out: a keytab the join made goes, one that was there stays
    new = dict(marker, computerName="NEWNAME")
    keep = tmp_path / "kept.keytab"
    shutil.copy(paths.keytab, keep)
    drop_keys(node, paths.keytab, new, lb1)
    assert not paths.keytab.exists()
    drop_keys(node, keep, dict(new, keytabExisted=True), lb1)
    assert keep.exists() and keytab.principals(keep.read_bytes()) == []
