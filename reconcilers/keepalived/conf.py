"""keepalived.conf as a language: read it into statements, write statements back as text.

keepalived's syntax is small: a statement is a keyword and its words on one line; a
statement followed by `{` opens a block that `}` closes; `#` and `!` start a comment
anywhere outside quotes; `"` and `'` group words (the quotes are removed). Everything the
package renders goes through `write`, and everything it reads through `parse`, so that the
rules of the language live here once:

- `keepalived_word` is the one quoting function of the format: a word that is plain stays
  as it is; a word holding spaces, braces or comment characters is quoted; a word that
  keepalived would read as something else whatever the quoting (`"`, `\\`, a `$`
  expansion, a control character) is refused with `UnsafeValue`.
- `split_line` reads one line of words the way keepalived does (used to validate the
  lines a manifest carries verbatim, and by the importer).
- `command_words` / `command_string` turn a script's argv into the one quoted string
  keepalived splits again into the program and its arguments (`script "/bin/x 'a b'"`).

Statements keep their line number, so that `keepalived -t`'s "(Line N)" can be pinned on
the object that rendered that line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from reconcilers.base import UnsafeValue, one_line

MAX_WORD = 255  # keepalived reads a line into a fixed buffer; long words are cut
MAX_LINE = 1000
INDENT = "    "


class SyntaxProblem(ValueError):
    """A line that is not keepalived syntax (unbalanced quotes, a stray brace)."""


@dataclass
class Stmt:
    """One statement: its words (unquoted) and, for a block, the statements inside."""

    words: list[str]
    body: list["Stmt"] | None = None
    line: int = 0
    owner: str = ""  # "Kind/name" of the marker comment it stands under (top level only)

    @property
    def keyword(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def args(self) -> list[str]:
        return self.words[1:]

    @property
    def is_block(self) -> bool:
        return self.body is not None

    def children(self, keyword: str) -> list["Stmt"]:
        return [s for s in (self.body or []) if s.keyword == keyword]

    def first(self, keyword: str) -> "Stmt | None":
        return next(iter(self.children(keyword)), None)

    def value(self, keyword: str) -> str | None:
        s = self.first(keyword)
        return " ".join(s.args) if s is not None and s.args else None

    def walk(self) -> Iterator["Stmt"]:
        yield self
        for child in self.body or []:
            yield from child.walk()


def line(*words: str) -> Stmt:
    return Stmt(list(words))


def block(words: Iterable[str], body: Iterable[Stmt]) -> Stmt:
    return Stmt(list(words), list(body))


# --- words -------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_.:/@%+,=*\[\]<>|&;^-]+")


def unsafe_in_word(value: str) -> str | None:
    """Why `value` cannot be one word of keepalived.conf whatever the quoting, or None."""
    if len(value) > MAX_WORD:
        return f"more than {MAX_WORD} characters (keepalived cuts long lines)"
    try:
        one_line(value, "keepalived.conf", max_length=MAX_WORD)
    except UnsafeValue:
        return "a control character, line break or invisible character"
    if '"' in value:
        return 'a double quote (")'
    if "\\" in value:
        return "a backslash (keepalived reads escapes)"
    if "$" in value:
        return "a '$' (keepalived expands $NAME and ${NAME} definitions)"
    if len(value) > MAX_WORD:
        return f"more than {MAX_WORD} characters (keepalived cuts long lines)"
    return None


def keepalived_word(value: object) -> str:
    """One word of keepalived.conf: plain words as they are, others double-quoted.

    A plain word cannot open or close a block, start a comment or a conditional (`@`, `~`
    at the start of a line are only special before the keyword, which is always plain).
    Refuses (UnsafeValue) what quoting cannot make one literal word."""
    text = str(value)
    why = unsafe_in_word(text)
    if why is not None:
        raise UnsafeValue(f"keepalived.conf: refused to write {text[:80]!r}: it holds {why}")
    if text and _PLAIN.fullmatch(text) and text[0] not in "@~":
        return text
    return f'"{text}"'


def command_words(argv: Iterable[str]) -> str:
    """A script's argv as the single string keepalived splits back into words: arguments
    holding spaces (or nothing) in single quotes. Refused: a single quote inside an argument
    (keepalived would end the quoted word there)."""
    out = []
    for arg in argv:
        why = unsafe_in_word(arg)
        if why is None and "'" in arg:
            why = "a single quote (keepalived groups script arguments with single quotes)"
        if why is not None:
            raise UnsafeValue(f"keepalived.conf: refused to write the script argument {arg[:80]!r}: it holds {why}")
        out.append(arg if arg and not re.search(r"[\s#!{}]", arg) else f"'{arg}'")
    return " ".join(out)


def split_command(text: str) -> list[str]:
    """The argv keepalived runs for a script string (the inverse of `command_words`):
    words separated by blanks, single or double quotes grouping them."""
    words, _ = _tokens(text, comments=False)
    return words


def command_string(argv: Iterable[str]) -> str:
    """The script as one word of the file (for `script`, `notify_*`, `misc_path`, …)."""
    return command_words(argv)


# --- reading ---------------------------------------------------------------------------


def _tokens(text: str, comments: bool = True) -> tuple[list[str], list[bool]]:
    """Words of one line and whether each was quoted; a comment ends the line."""
    words: list[str] = []
    quoted: list[bool] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\v\f":
            i += 1
            continue
        if comments and c in "#!":
            break
        word, was_quoted = [], False
        while i < n and text[i] not in " \t\r\v\f":
            c = text[i]
            if comments and c in "#!" and not word:
                break
            if c in "\"'":
                end = text.find(c, i + 1)
                if end < 0:
                    raise SyntaxProblem(f"unmatched quote {c} in {text.strip()!r}")
                word.append(text[i + 1:end])
                was_quoted = True
                i = end + 1
                continue
            if c == "\\" and i + 1 < n:
                word.append(text[i + 1])
                i += 2
                continue
            word.append(c)
            i += 1
        if word or was_quoted:
            words.append("".join(word))
            quoted.append(was_quoted)
        elif comments and i < n and text[i] in "#!":
            break
    return words, quoted


def split_line(text: str) -> list[str]:
    """The words of one configuration line, as keepalived reads them. Raises SyntaxProblem."""
    words, _ = _tokens(text)
    return words


_MARKER = re.compile(r"^\s*#\s*reconcile:\s*([A-Za-z]+)/(\S+)\s*$")


def marker(kind: str, name: str) -> str:
    """The comment that names the manifest of the statements below it."""
    return f"# reconcile: {kind}/{name}"


def parse(text: str) -> list[Stmt]:
    """Statements of a keepalived.conf. Tolerant as keepalived is: a stray `}` is ignored,
    blocks left open at the end are closed. Raises SyntaxProblem on an unmatched quote."""
    root: list[Stmt] = []
    stack: list[list[Stmt]] = [root]
    owner = ""
    last: Stmt | None = None  # the last statement of this line or the previous one
    for number, raw in enumerate(text.splitlines(), start=1):
        m = _MARKER.match(raw)
        if m and len(stack) == 1:
            owner = f"{m.group(1)}/{m.group(2)}"
            continue
        words, quoted = _tokens(raw)
        current: list[str] = []
        for word, was_quoted in zip(words, quoted):
            if word in ("{", "}") and not was_quoted:
                if current:
                    last = Stmt(current, None, number, owner if len(stack) == 1 else "")
                    stack[-1].append(last)
                    current = []
                if word == "{":
                    if last is None:
                        continue
                    last.body = last.body if last.body is not None else []
                    stack.append(last.body)
                    last = None
                elif len(stack) > 1:
                    stack.pop()
                    last = None
                continue
            current.append(word)
        if current:
            last = Stmt(current, None, number, owner if len(stack) == 1 else "")
            stack[-1].append(last)
    return root


# --- writing ---------------------------------------------------------------------------


def write(stmts: Iterable[Stmt], depth: int = 0) -> list[str]:
    """Lines of text for statements (blocks indented by four spaces per level)."""
    out: list[str] = []
    for s in stmts:
        text = INDENT * depth + " ".join(keepalived_word(w) for w in s.words)
        if s.body is None:
            out.append(text)
            continue
        out.append(f"{text} {{")
        out += write(s.body, depth + 1)
        out.append(INDENT * depth + "}")
    for text in out:
        if len(text) > MAX_LINE:
            raise UnsafeValue(f"keepalived.conf: a line of {len(text)} characters (keepalived reads at most "
                              f"{MAX_LINE}): {text[:60]}…")
    return out


@dataclass
class Rendered:
    """A whole file: its text, and which object wrote each line (for native refusals)."""

    text: str
    owners: dict[int, str] = field(default_factory=dict)  # line number → "Kind/name"

    def owner_of(self, number: int) -> str:
        return self.owners.get(number, "")


def render_file(header: list[str], sections: list[tuple[str, list[Stmt]]]) -> Rendered:
    """The file: header comments, then each object's statements under its marker."""
    lines = list(header)
    owners: dict[int, str] = {}
    for owner, stmts in sections:
        if not stmts:
            continue
        lines.append("")
        kind, _, name = owner.partition("/")
        lines.append(marker(kind, name))
        for text in write(stmts):
            lines.append(text)
            owners[len(lines)] = owner
    return Rendered("\n".join(lines) + "\n", owners)
