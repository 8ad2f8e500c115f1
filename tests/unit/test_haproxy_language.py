"""HAProxy's configuration language as reconcile understands it: words, quoting, comments,
the one escaping function, directive checks, addresses and server lines, and the
directives that need the node's policy."""
from __future__ import annotations

import pytest

from schemas.haproxy_lang import (
    capability, check_directive, check_name, inline_secret, parse_address, parse_bind, parse_server,
    strip_comment, words,
)


@pytest.mark.parametrize("line, expected", [
    ("timeout client 30s", ["timeout", "client", "30s"]),
    ('http-request set-header X "a b"  # c', ["http-request", "set-header", "X", "a b"]),
    ("acl x path_beg /a\\ b \\#c", ["acl", "x", "path_beg", "/a b", "#c"]),
    ("""log-format '%{+Q}o\\ %t' "x"'y'""", ["log-format", "%{+Q}o\\ %t", "xy"]),
    ('set-var(txn.x) str("\\\\\'foo\\\\\'")', ["set-var(txn.x)", "str(\\'foo\\')"]),
    ("\tmaxconn\t100\t", ["maxconn", "100"]),
])
def test_words_follow_haproxys_quoting_and_escaping(line: str, expected: list[str]) -> None:
    assert words(line) == expected


def test_a_comment_starts_at_an_unprotected_hash_only() -> None:
    assert strip_comment("  timeout tunnel 4h  # for websocket") == "timeout tunnel 4h"
    assert strip_comment('http-response set-header X "#1"  # a comment') == 'http-response set-header X "#1"'
    assert strip_comment("acl h hdr(x) -m str \\#tag # c") == "acl h hdr(x) -m str \\#tag"
    assert strip_comment("# only a comment") == ""


@pytest.mark.parametrize("line, message", [
    ("timeout server 5s\nbackend evil", "a directive is one line"),
    ("option x\r", "a directive is one line"),
    ("  ", "may not be empty"),
    ("# just a comment", "a comment is not a directive"),
    ("backend evil", "'backend' starts a new section"),
    ("  userlist x", "'userlist' starts a new section"),
])
def test_a_directive_is_one_line_that_opens_no_section(line: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        check_directive(line)
    assert message in str(err.value)


def test_a_directive_is_kept_as_written_but_stripped() -> None:
    assert check_directive("  log     global  ") == "log     global"
    assert check_directive(".if defined(X)") == ".if defined(X)"
    assert check_directive("use_backend %[req.hdr(host),lower,map(/etc/haproxy/h.map)]").startswith("use_backend %[")


@pytest.mark.parametrize("name", ["be_http-in", "k8s_api", "Web.1", "api:v2", "a"])
def test_names_as_haproxy_allows_them(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["a b", "a/b", "", "é", "x" * 256])
def test_names_haproxy_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        check_name(name)


def test_passwords_written_inline_are_found() -> None:
    assert inline_secret("stats auth admin:pw") == "`stats auth` holds a password"
    assert inline_secret("user alice insecure-password pw groups ops") == "`user alice` holds a password"
    assert inline_secret("user alice password $6$hash") == "`user alice` holds a password"
    assert inline_secret("stats auth admin:((secret))") is None
    assert inline_secret("stats uri /") is None and inline_secret("user x groups ops") is None


@pytest.mark.parametrize("line, section, need", [
    ("lua-load /etc/haproxy/a.lua", "global", "lua"),
    ("lua-prepend-path /x/?.lua", "global", "lua"),
    ("external-check", "global", "external-check"),
    ("option external-check", "backend", "external-check"),
    ("setenv FOO bar", "global", "environment"),
    ("presetenv FOO bar", "global", "environment"),
    ("insecure-fork-wanted", "global", "insecure-fork"),
    ("command /usr/bin/spoa", "program", "program"),
    ("stats socket ipv4@0.0.0.0:9999 level admin", "global", "stats-socket-tcp"),
    ("stats socket *:1999 level admin", "global", "stats-socket-tcp"),
    ("stats socket /run/haproxy/admin.sock level admin", "global", None),
    ("stats socket unix@/run/h.sock", "global", None),
    ("option httpchk", "backend", None),
])
def test_directives_that_run_code_or_open_control_paths_need_a_capability(line: str, section: str,
                                                                           need: str | None) -> None:
    assert capability(line, section) == need


@pytest.mark.parametrize("text, host, port, family", [
    ("192.0.2.1:80", "192.0.2.1", 80, "ipv4"),
    ("[2001:db8::1]:443", "2001:db8::1", 443, "ipv6"),
    ("2001:db8::1:443", "2001:db8::1", 443, "ipv6"),
    ("ipv6@::1:8080", "::1", 8080, "ipv6"),
    ("db1.corp.example.test:5432", "db1.corp.example.test", 5432, "name"),
    ("db1", "db1", None, "name"),
    ("10.0.0.1", "10.0.0.1", None, "ipv4"),
    ("10.0.0.1:+1", "10.0.0.1", None, "ipv4"),
    ("/run/app.sock", "/run/app.sock", None, "other"),
    ("${BACKEND}:80", "${BACKEND}:80", None, "other"),
])
def test_addresses_as_servers_and_binds_give_them(text: str, host: str, port: int | None, family: str) -> None:
    address = parse_address(text)
    assert (address.host, address.port, address.family) == (host, port, family)


def test_server_and_bind_lines() -> None:
    server = parse_server("server web.1 [2001:db8::5]:8080 check inter 1s weight 3")
    assert server is not None and server.name == "web.1" and server.address.host == "2001:db8::5"
    assert server.options == ["check", "inter", "1s", "weight", "3"]
    assert parse_server("server-template srv 3 app.example.test:80") is None
    address, options = parse_bind("bind :443 ssl crt /etc/x.pem alpn h2,http/1.1")
    assert (address.host, address.port, options[:1]) == ("0.0.0.0", 443, ["ssl"])
    assert parse_bind("bind :::80 v4v6")[0].host == "::"
