"""The metrics hooks' base: every hook exists and does nothing."""

from __future__ import annotations

from beanproto.metrics import JOB_OUTCOMES, MetricsHooks


def test_the_base_hooks_do_nothing() -> None:
    hooks = MetricsHooks()
    assert hooks.command("put", "INSERTED", 0.001, "127.0.0.1:11300") is None
    for outcome in JOB_OUTCOMES:
        assert hooks.job("emails", outcome, 0.5, failed=False, server="h:1") is None


def test_a_subclass_overrides_what_it_needs() -> None:
    seen: list[tuple[str, str]] = []

    class Commands(MetricsHooks):
        def command(self, name: str, outcome: str, duration: float, server: str) -> None:
            seen.append((name, outcome))

    Commands().command("reserve", "RESERVED", 0.0, "h:1")
    Commands().job("t", "deleted", 0.0, failed=False, server="h:1")
    assert seen == [("reserve", "RESERVED")]
