"""A pass's HAProxy changes as one batch: composing the file, and pinning what `haproxy -c`
refuses (output recorded from haproxy 2.6) on the objects it names, so that the rest of
the batch is installed without them."""
from __future__ import annotations

from pathlib import Path

from controller.loader import load_tree
from reconcilers.base import ApplyError, Change, Node, Refusal, Runner, install_batch
from reconcilers.haproxy.config import parse_config, section_at
from reconcilers.haproxy.process import refusals_from
from reconcilers.haproxy.reconciler import HAProxyReconciler

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "haproxy"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_alerts_at_a_line_are_pinned_on_the_section_that_holds_the_line() -> None:
    refusals = refusals_from(fixture("haproxy-c-batch.txt"), fixture("haproxy-c-batch.cfg"))
    assert refusals == [
        Refusal("backend app (line 18): unknown keyword 'frobnicate' in 'backend' section", (("Backend", "app"),)),
        Refusal("backend slow (line 22): 'server slow/s1' : invalid value 0 for argument 'inter' of server s1..",
                (("Backend", "slow"),)),
    ]


def test_alerts_after_parsing_are_pinned_on_the_proxy_they_name() -> None:
    refusals = refusals_from(fixture("haproxy-c-references.txt"), fixture("haproxy-c-references.cfg"))
    assert refusals == [Refusal("Proxy 'web': unable to find required default_backend: 'gone'.",
                                (("Frontend", "web"),))]


def test_output_without_an_alert_is_a_refusal_of_nothing_in_particular() -> None:
    refusals = refusals_from("something went wrong\n", "global\n")
    assert refusals == [Refusal("something went wrong")]


def test_section_at_finds_the_header_above_a_line() -> None:
    text = fixture("haproxy-c-batch.cfg")
    assert section_at(text, 18) == ("backend", "app")
    assert section_at(text, 13) == ("frontend", "web")
    assert section_at(text, 1) is None  # a comment before any section


def change(kind: str, name: str, action: str = "create", desired: dict | None = None) -> Change:
    return Change(kind, name, action, desired if action != "delete" else None, None)


def test_a_batch_retried_without_the_refused_objects_lands_the_others() -> None:
    """install_batch with an attempt that asks a recorded haproxy -c answer: the batch is
    tried whole (refused: app and slow), then without them (accepted)."""
    tried: list[list[str]] = []

    def attempt(batch: list[Change]) -> list[Refusal]:
        names = [c.name for c in batch]
        tried.append(names)
        if "app" in names or "slow" in names:
            found = refusals_from(fixture("haproxy-c-batch.txt"), fixture("haproxy-c-batch.cfg"))
            return [r for r in found if r.objects[0][1] in names]
        return []

    batch = [change("Backend", n) for n in ("app", "slow", "fine")] + [change("Frontend", "web")]
    outcomes = install_batch(batch, attempt)
    assert tried == [["app", "slow", "fine", "web"], ["fine", "web"]]
    assert outcomes[("Backend", "fine")] is None and outcomes[("Frontend", "web")] is None
    assert isinstance(outcomes[("Backend", "app")], ApplyError)
    assert "unknown keyword 'frobnicate'" in str(outcomes[("Backend", "app")])
    assert "argument 'inter'" in str(outcomes[("Backend", "slow")])


NODE = Node("lb1", Runner(dry_run=True))


def test_a_batch_composes_creates_and_updates_and_drops_deletes_leaving_the_rest() -> None:
    rec = HAProxyReconciler()
    desired = rec.desired(load_tree(FIXTURES / "tree"), NODE)
    file = parse_config(rec.render(NODE)["/etc/haproxy/haproxy.cfg"])
    app = dict(desired["Backend"]["app"].state)
    batch = [change("Backend", "app", "update", app), change("Frontend", "legacy", "delete")]
    rec.model.objects[("Backend", "app")].sections[("backend", "app")].insert(0, "balance leastconn")
    sections = rec._compose(file, batch, fill=None)
    assert ("frontend", "legacy") not in sections and ("frontend", "web") in sections
    assert "    balance leastconn" in sections[("backend", "app")]
    assert sections[("backend", "legacy")] == next(s for s in file.sections if s.key == ("backend", "legacy")).lines()
    text, owners = rec._text(sections)
    assert text.index("global") < text.index("defaults") < text.index("frontend web") < text.index("backend app")
    assert owners[("backend", "app")] == ("Backend", "app") and ("global", "") not in owners  # reconcile's own


def test_composing_every_desired_object_gives_exactly_the_rendered_file() -> None:
    """The file an apply from empty composes is the one validate() checked, so its
    `haproxy -c` acceptance is remembered and not run twice."""
    rec = HAProxyReconciler()
    desired = rec.desired(load_tree(FIXTURES / "tree"), NODE)
    batch = [change(kind, name, "create", d.state) for kind, objs in desired.items() for name, d in objs.items()]
    text, _ = rec._text(rec._compose(parse_config(None), batch, fill=None))
    assert text == rec.render(NODE)["/etc/haproxy/haproxy.cfg"]
