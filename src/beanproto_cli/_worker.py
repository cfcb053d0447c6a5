"""``beanproto worker MODULE:ATTR``: run a handler (or a ``Worker``) until stopped.

Theory of operation: the command finds its target the way ``rq worker`` and
``dramatiq`` do (the current directory first on ``sys.path``, then
``MODULE:ATTR``), builds a :class:`beanproto_sync.Worker` for a plain function
or a :class:`beanproto_anyio.Worker` for an ``async def`` (``--backend``
overrides), checks the server and the tubes with one short connection so that
a mistake is one line of error before anything runs, prints a one-line banner,
and runs the worker. The library never prints; this command gives the
``beanproto.worker`` log lines a handler on standard error.

Stopping: SIGTERM or SIGINT asks the worker to stop gracefully (no new job;
running handlers get ``--grace`` seconds) and the command exits 0; a second
SIGINT stops at once (the jobs still running go back to the server) and exits
130. On the sync backend the signal handlers only call ``Worker.stop``, which
is safe there; on asyncio and trio a task receives the signals
(``anyio.open_signal_receiver``) and stops the worker from inside the loop.

Metrics (``--metrics HOST:PORT``): the worker gets a
:class:`beanproto.prometheus.PrometheusMetrics` (``metrics=``), whose registry an HTTP
server thread serves at ``/metrics`` while the worker runs; it needs the
``[prometheus]`` extra, imported only then.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

import click

from beanproto import DEFAULT_TUBE
from beanproto.worker import DEFAULT_GRACE, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAY, is_async

__all__ = ["MissingExtra", "exporter_module", "load_target", "run_worker"]

#: Exit status after a second SIGINT stopped the worker at once (128 + SIGINT).
FORCED_EXIT: Final = 130
#: The defaults of the options shared with the workers.
DEFAULTS: Final[dict[str, Any]] = {
    "max_attempts": DEFAULT_MAX_ATTEMPTS,
    "retry_delay": DEFAULT_RETRY_DELAY,
    "grace": DEFAULT_GRACE,
}
#: The options that configure a worker: refused with a ``Worker`` object, which has its own.
WORKER_OPTIONS: Final = (
    "tubes",
    "concurrency",
    "max_attempts",
    "retry_delay",
    "grace",
    "encoding",
    "metrics",
)


class MissingExtra(click.ClickException):
    """An option or command needs an extra that is not installed (exit status 1)."""

    exit_code = 1


def exporter_module(what: str) -> ModuleType:
    """``beanproto_cli._exporter`` (and so prometheus_client), or :class:`MissingExtra`
    with one line naming the extra that ``what`` needs."""
    try:
        from . import _exporter
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "prometheus_client":
            raise
        raise MissingExtra(
            f"{what} needs the [prometheus] extra: pip install 'beanproto[prometheus]'"
        ) from None
    return _exporter


class TargetError(click.UsageError):
    """``MODULE:ATTR`` does not name a handler or a worker."""


def load_target(spec: str) -> Any:
    """Import ``MODULE:ATTR`` (``ATTR`` may be dotted) with the current
    directory first on ``sys.path``; :class:`TargetError` says what is wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"{spec!r}: expected MODULE:ATTR, e.g. tasks:send_email")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise TargetError(f"{spec!r}: no module named {exc.name!r}") from None
        raise TargetError(f"{spec!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:
        raise TargetError(
            f"{spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TargetError(f"{spec!r}: {module_name} has no attribute {attr!r}") from None
    return target


def _is_worker(target: object) -> str | None:
    """``"sync"`` or ``"anyio"`` for a worker object, else ``None``."""
    module = type(target).__module__
    if type(target).__name__ == "Worker":
        if module.startswith("beanproto_sync"):
            return "sync"
        if module.startswith("beanproto_anyio"):
            return "anyio"
    return None


def _log_to_stderr() -> None:
    log = logging.getLogger("beanproto.worker")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def run_worker(
    ctx: click.Context,
    spec: str,
    *,
    address: tuple[str, int] | str | list[tuple[str, int] | str],
    shown: str,
    tubes: tuple[str, ...],
    concurrency: int,
    backend: str | None,
    max_attempts: int,
    retry_delay: float,
    grace: float,
    encoding: str | None,
    burst: bool,
    check: Callable[[tuple[str, ...]], None],
    metrics: str | None = None,
) -> int:
    """Build the worker, check the server, print the banner, run; the exit status.
    ``metrics``: serve the worker's Prometheus metrics on this ``HOST:PORT``."""
    listen: tuple[str, int] | None = None
    hooks: dict[str, Any] = {}  # metrics=, only when asked for
    if metrics is not None:
        exporter = exporter_module("--metrics")
        try:
            listen = exporter.parse_listen(metrics)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics") from None
        hooks["metrics"] = exporter.PrometheusMetrics()
    target = load_target(spec)
    kind = _is_worker(target)
    if kind is not None:
        given = [
            param.opts[0]
            for param in ctx.command.params
            if param.name in WORKER_OPTIONS
            and ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{spec} is a Worker, which has its own address and options: "
                f"drop {', '.join(given)}"
            )
        if kind == "sync" and backend not in (None, "sync"):
            raise click.UsageError(f"{spec} is a beanproto_sync.Worker: it runs on --backend sync")
        if kind == "anyio" and backend == "sync":
            raise click.UsageError(f"{spec} is a beanproto_anyio.Worker: use asyncio or trio")
        worker = target
        backend = backend or ("sync" if kind == "sync" else "asyncio")
    elif callable(target):
        backend = backend or ("asyncio" if is_async(target) else "sync")
        if backend == "sync" and is_async(target):
            raise click.UsageError(f"{spec} is an async def: run it with --backend asyncio or trio")
        worker = _build(
            backend,
            address,
            concurrency=concurrency,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            grace=grace,
            encoding=encoding,
            **hooks,
        )
        for tube in tubes or (DEFAULT_TUBE,):
            worker.add_handler(tube, target)
    else:
        raise TargetError(f"{spec!r} is a {type(target).__name__}: expected a function or a Worker")
    check(tuple(worker.tubes))
    _log_to_stderr()
    click.echo(
        f"beanproto worker: {shown}, tubes {', '.join(worker.tubes)}, backend {backend}, "
        f"concurrency {worker.options.concurrency}" + (", burst" if burst else ""),
        err=True,
    )
    if listen is None:
        return _run(worker, burst, backend)
    return _run_serving(worker, burst, backend, hooks["metrics"].registry, listen)


def _run(worker: Any, burst: bool, backend: str) -> int:
    if backend == "sync":
        return _run_sync(worker, burst)
    return _run_async(worker, burst, backend)


def _run_serving(
    worker: Any, burst: bool, backend: str, registry: Any, listen: tuple[str, int]
) -> int:
    """Run the worker while a thread serves ``registry`` on ``listen``."""
    exporter = exporter_module("--metrics")
    host, port = listen
    try:
        server = exporter.serve_registry(registry, host, port, "beanproto worker")
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    thread = threading.Thread(
        target=server.serve_forever, name="beanproto-worker-metrics", daemon=True
    )
    thread.start()
    click.echo(f"beanproto worker: metrics at {exporter.url(server)}", err=True)
    try:
        return _run(worker, burst, backend)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _build(
    backend: str, address: tuple[str, int] | str | list[tuple[str, int] | str], **options: Any
) -> Any:
    if backend == "sync":
        import beanproto_sync

        return beanproto_sync.Worker(address, **options)
    try:
        import beanproto_anyio
    except ImportError as exc:  # pragma: no cover - anyio is missing
        raise click.UsageError(
            f"--backend {backend} needs anyio: pip install 'beanproto[anyio]' ({exc})"
        ) from None
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:  # pragma: no cover - trio is missing
            raise click.UsageError(
                "--backend trio needs trio: pip install 'beanproto[trio]'"
            ) from None
    return beanproto_anyio.Worker(address, **options)


class _Signals:
    """What SIGTERM and SIGINT do, on either backend: the first asks the worker
    to stop gracefully; a SIGINT after it stops it at once (:data:`FORCED_EXIT`).
    :meth:`received` only calls ``Worker.stop``, which is safe in a signal handler."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.stopping = False
        self.forced = False

    def received(self, signum: int, frame: object = None) -> None:
        if self.stopping and signum == signal.SIGINT:
            self.forced = True
            self.worker.stop(grace=0)
        else:
            self.stopping = True
            self.worker.stop()

    @property
    def status(self) -> int:
        return FORCED_EXIT if self.forced else 0


def _run_sync(worker: Any, burst: bool) -> int:
    signals = _Signals(worker)
    previous = {
        sig: signal.signal(sig, signals.received) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        worker.run(burst=burst)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return signals.status


def _run_async(worker: Any, burst: bool, backend: str) -> int:
    import anyio

    signals = _Signals(worker)
    error: BaseException | None = None

    async def main() -> None:
        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for signum in received:
                    signals.received(signum)

        async def run() -> None:
            nonlocal error
            try:
                await worker.run(burst=burst)
            except (Exception, KeyboardInterrupt, SystemExit) as exc:
                error = exc  # raised after the loop, bare rather than in an exception group
            finally:
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals)
            tg.start_soon(run)

    anyio.run(main, backend=backend)
    if error is not None:
        raise error
    return signals.status
