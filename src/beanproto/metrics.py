"""Metrics hooks: what clients, pools and workers report, and to whom.

Give a client, a pool or a worker an object with these methods (``metrics=``)
and it calls them as it works; give none and nothing is measured (the clients
then skip the clock too). Subclass :class:`MetricsHooks` and override what you
need; its methods do nothing.

    class Printer(MetricsHooks):
        def command(self, name, outcome, duration, server):
            print(name, outcome, f"{duration * 1000:.2f} ms", server)

A hook runs on the caller's thread or task, inside the call it measures: keep it
short and do not let it raise (an exception from a hook goes to the caller).
"""

from __future__ import annotations

__all__ = ["JOB_OUTCOMES", "MetricsHooks"]

#: The outcomes :meth:`MetricsHooks.job` reports.
JOB_OUTCOMES = ("deleted", "released", "buried", "touched")


class MetricsHooks:
    """The hooks, each a no-op here. Names are the protocol's: a command is its
    wire name (``put``, ``reserve-with-timeout``, ...), an outcome is the reply's
    first word (``INSERTED``, ``TIMED_OUT``, ``NOT_FOUND``, ...)."""

    __slots__ = ()

    def command(self, name: str, outcome: str, duration: float, server: str) -> None:
        """One command answered, or not: ``outcome`` is the reply's first word,
        ``"BROKEN"`` when the connection failed before the reply (its fate is
        unknown), or ``"INTERRUPTED"`` when the call was cancelled, interrupted or
        timed out first. ``duration`` is seconds from the write to the reply (for a
        pipelined batch, from the batch's write to this reply); ``server`` is
        the address as :func:`beanproto.address.describe` writes it."""

    def job(self, tube: str, outcome: str, duration: float, *, failed: bool, server: str) -> None:
        """A worker's job outcome (one of :data:`JOB_OUTCOMES`): ``deleted``,
        ``released`` or ``buried`` once its handler ended, ``duration`` the
        handler's seconds, ``failed`` whether the handler raised (other than
        :class:`~beanproto.worker.RetryJob`/:class:`~beanproto.worker.BuryJob`;
        a body that does not decode counts as failed); or ``touched`` when the
        worker kept a long job, ``duration`` the handler's time so far."""
