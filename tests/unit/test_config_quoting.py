"""The second line of defence: each file format's quoting function, on its own.

Whatever the schema let through, a value written by these functions cannot end a line,
open a block or section, or start a key: each hostile value is either refused
(UnsafeValue) or written so that the format's own parsing rules read it back as the one
value it was. The schema refuses all of these payloads first (test_injection_matrix.py);
here they reach the functions directly.
"""
from __future__ import annotations

import configparser
import re

import pytest

from reconcilers.base import UnsafeValue, one_line
from reconcilers.pacemaker.cib import cib_value
from reconcilers.pacemaker.corosync import corosync_value
from reconcilers.pacemaker.corosync import parse as parse_corosync_conf
from reconcilers.lxc.config import lxc_comment, lxc_init_cmd, lxc_value, parse_config
from reconcilers.domain.krb5 import krb5_value, parse_krb5_conf
from reconcilers.domain.pam import pam_argument, parse_pam_block
from reconcilers.domain.sssd import parse_ini, sssd_key, sssd_list, sssd_section, sssd_value
from reconcilers.domain.sudoers import sudoers_command, sudoers_escape, sudoers_unescape
from reconcilers.haproxy.config import haproxy_word
from reconcilers.haproxy.runtime import runtime_command
from reconcilers.keepalived.conf import command_words, keepalived_word
from tests.unit.test_injection_matrix import PAYLOADS, haproxy_words, keepalived_words

VALUES = [make("web") for _, make in PAYLOADS] + ["", " ", "a b", "x" * 5000, "\\", "a\\", "[x]", "%u", "-x"]


def refused_or(check, func, value):
    """Call func(value); a refusal is fine, anything written must pass `check`."""
    try:
        written = func(value)
    except UnsafeValue:
        return "refused"
    check(written, value)
    return "written"


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_haproxy_words_read_back_as_one_word(value):
    def check(word, v):
        assert haproxy_words(f"server {word} 192.0.2.1:80") == ["server", v, "192.0.2.1:80"]
        assert not v.startswith("-")
    refused_or(check, haproxy_word, value)


def test_haproxy_quotes_what_needs_it_and_leaves_plain_words_alone():
    assert haproxy_word("/api") == "/api" and haproxy_word(80) == "80"
    assert haproxy_word("a b#c$d") == "'a b#c$d'"
    for bad in ("a\nb", "it's", "-i", ""):
        with pytest.raises(UnsafeValue):
            haproxy_word(bad)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_haproxy_runtime_commands_stay_one_command(value):
    def check(cmd, v):
        assert "\n" not in cmd and ";" not in cmd
    refused_or(check, lambda v: runtime_command(f"set server app/{v} weight 2"), value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_keepalived_words_read_back_as_one_word(value):
    def check(word, v):
        assert keepalived_words(f"router_id {word} 1") == (["router_id", v, "1"], (0, 0))
        assert "$" not in word and "\\" not in word, "keepalived expands $ and reads escapes even in quotes"
    refused_or(check, keepalived_word, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_keepalived_script_arguments_read_back_as_one_argument(value):
    def check(text, v):
        word = keepalived_word(text)  # the whole command is one word of the line…
        [_, inner, _], _ = keepalived_words(f"script {word} root")
        assert keepalived_words(inner)[0] == ["/bin/x", v]  # …that keepalived splits into the argv again
    refused_or(check, lambda v: command_words(["/bin/x", v]), value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_corosync_values_stay_in_their_key(value):
    def check(text, v):
        conf = parse_corosync_conf(f"totem {{\n    cluster_name: {text}\n    version: 2\n}}\n")
        assert conf == {"totem": [{"cluster_name": v, "version": "2"}]}
    refused_or(check, corosync_value, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_lxc_values_stay_one_key(value):
    def check(text, v):
        assert parse_config(f"lxc.uts.name = {text}\nlxc.start.auto = 1\n") == \
            {"lxc.uts.name": [v], "lxc.start.auto": ["1"]}
    refused_or(check, lxc_value, value)
    refused_or(lambda text, v: None if "\n" not in text else pytest.fail(text), lxc_comment, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_lxc_init_arguments_split_back_the_same(value):
    def check(text, v):
        # LXC's lxc_string_split_quoted: blanks separate; a word starting with a quote runs to the next one
        assert text.split() == ["/bin/httpd", v, "-f"] and not v.startswith(("'", '"'))
    refused_or(check, lambda v: lxc_init_cmd(["/bin/httpd", v, "-f"]), value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_sssd_values_sections_and_lists_read_back(value):
    def check_value(text, v):
        conf = configparser.ConfigParser(interpolation=None)
        conf.read_string(f"[domain/x]\nfallback_homedir = {text}\ndefault_shell = /bin/bash\n")
        assert dict(conf["domain/x"]) == {"fallback_homedir": v, "default_shell": "/bin/bash"}

    def check_section(text, v):
        conf = configparser.ConfigParser(interpolation=None)
        conf.read_string(f"{text}\na = 1\n")
        assert conf.sections() == [v] and dict(conf[v]) == {"a": "1"}

    def check_list(text, v):
        assert [item.strip() for item in text.split(",")] == ["app-admins", v]

    refused_or(check_value, sssd_value, value)
    refused_or(check_section, sssd_section, value)
    refused_or(check_list, lambda v: sssd_list(["app-admins", v]), value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_pam_arguments_stay_one_argument_of_one_line(value):
    def check(arg, v):
        text = f"# >>> reconcile DomainJoin/x\nsession optional pam_mkhomedir.so {arg} umask=0077\n# <<< reconcile DomainJoin/x\n"
        assert parse_pam_block(text, "x") == {"skel": v, "umask": "0077"}
    refused_or(check, lambda v: pam_argument("skel", v), value)


def sudoers_words(line: str) -> list[str]:
    """sudoers' lexer, for what we write: blanks and unescaped ',' ':' '=' separate words,
    a backslash escapes the next character."""
    return [sudoers_unescape(w) for w in re.findall(r"(?:\\.|[^\s\\,:=()])+", line)]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_sudoers_group_names_read_back_as_one_group(value):
    def check(word, v):
        assert sudoers_words(f"%{word} ALL=(ALL:ALL) ALL")[0] == f"%{v}"
        assert not word.endswith("\\") or word.endswith("\\\\")
    refused_or(check, sudoers_escape, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_sudoers_commands_stay_one_command_of_one_line(value):
    def check(text, v):
        if v != "ALL":
            assert sudoers_words(f"/bin/echo {text}")[1:] == v.split()
            assert not re.search(r"(?<!\\)[,:=#]", text)
    refused_or(check, sudoers_command, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_sssd_option_names_stay_one_option(value):
    def check(text, v):
        (section,) = parse_ini(f"[nss]\n{text} = 1\n")
        assert [(o.key, o.value) for o in section.options] == [(v, "1")]
    refused_or(check, sssd_key, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_krb5_values_stay_one_relation(value):
    def check(text, v):
        conf = parse_krb5_conf(f"[libdefaults]\n\tdefault_realm = {text}\n\trdns = false\n")
        assert conf == {"libdefaults": {"default_realm": v, "rdns": "false"}}
    refused_or(check, krb5_value, value)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_cib_values_carry_nothing_xml_or_pacemaker_cannot(value):
    refused_or(lambda text, v: None if text == v and "\n" not in text else pytest.fail(text), cib_value, value)


def test_one_line_names_the_character_it_refuses():
    with pytest.raises(UnsafeValue, match=r"holds a newline"):
        one_line("/var/lib/lxc\n", "an LXC config line")
    with pytest.raises(UnsafeValue, match=r"U\+2028 \(LINE SEPARATOR\)"):
        one_line("a\u2028b", "x")
    with pytest.raises(UnsafeValue, match="at most 10"):
        one_line("x" * 11, "x", max_length=10)
