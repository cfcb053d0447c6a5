"""The ``beanproto`` command: click commands over :class:`beanproto_sync.Client`.

Theory of operation: every command opens its own blocking client (``_connect``)
to the address from ``--address``, ``BEANSTALKD_URL`` or the default, does its
work, and prints either for people (rich tables on a terminal, tab-separated
text in a pipe, bodies made safe for a terminal) or, with ``--json``, for scripts
(the server's own key names, ``current-jobs-ready``). ``bury``, ``dump`` and
``restore`` pipeline thousands of commands through ``Client.pipeline``.

Errors never show a traceback: the group's ``invoke`` turns beanproto's
exceptions into click exceptions with a message and an exit status: 1 for a
refusal by the server (``job 5 not found``), 2 for a usage error (click's own),
input ``restore`` cannot read, or a connection that failed or broke.

Several servers (``--address h1,h2`` or such a ``BEANSTALKD_URL``): ``tubes``,
``stats`` and ``top`` read each server in turn (``_Servers``) and show them all
with a server column and totals; a server that cannot be read is shown as down,
the others are shown, and the exit status is 2. Every other command works on one
server and refuses a list (``_target``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, TypeVar, cast

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from beanproto import (
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    BrokenConnectionError,
    Buried,
    Bury,
    Command,
    CommandError,
    DeadlineSoon,
    DeadlineSoonError,
    Found,
    Ignore,
    Inserted,
    InvalidArgument,
    Job,
    JobStats,
    NotFound,
    NotFoundError,
    Peek,
    Put,
    RemoteProtocolError,
    Reserved,
    ReserveJob,
    ReserveWithTimeout,
    ServerStats,
    Stats,
    StatsJob,
    StatsTube,
    TimedOut,
    TimedOutError,
    TubeStats,
    Use,
    Using,
    Watch,
    __version__,
    error_for_event,
)
from beanproto.adapter import server_stats, tube_stats, watch_count
from beanproto_sync import Client

from ._address import DEFAULT_ADDRESS, AddressError, describe, parse_address, parse_addresses
from ._dump import STATES, DumpedJob, RecordError, job_record, parse_record
from ._render import (
    body_json,
    body_text,
    key_value_table,
    key_value_text,
    servers_stats_table,
    servers_stats_text,
    servers_top_frame,
    servers_tubes_table,
    servers_tubes_text,
    stats_dict,
    top_frame,
    top_summary,
    tubes_table,
    tubes_text,
)
from ._worker import DEFAULTS as WORKER_DEFAULTS
from ._worker import exporter_module, run_worker

__all__ = ["cli", "main"]

#: Socket timeout for connecting and for every reply (not the wait of a reserve).
SOCKET_TIMEOUT: Final = 30.0
#: Jobs per pipelined ``put_many`` when reading standard input.
BATCH_SIZE: Final = 1000
#: ``put`` prints the ids up to this many jobs, and only a count beyond.
MAX_IDS_SHOWN: Final = 100

_U32: Final = click.IntRange(0, 2**32 - 1)
_JOB_ID: Final = click.IntRange(0, 2**64 - 1)


class Refused(click.ClickException):
    """The server refused what was asked (exit status 1)."""

    exit_code = 1


class ConnectionFailed(click.ClickException):
    """The server could not be reached, or the connection broke (exit status 2)."""

    exit_code = 2


class OneServer(click.ClickException):
    """A command that works on one server was given several (exit status 2, one line)."""

    exit_code = 2


_Target = tuple[tuple[str, int] | str, str]


@dataclass
class _Settings:
    address: str | None = None

    def targets(self) -> list[_Target]:
        """The addresses to connect to (one or more), and how to show each."""
        if self.address is not None:
            text, source = self.address, "--address"
        elif os.environ.get("BEANSTALKD_URL"):
            text, source = os.environ["BEANSTALKD_URL"], "BEANSTALKD_URL"
        else:
            text, source = DEFAULT_ADDRESS, "the default address"
        try:
            addresses = parse_addresses(text)
        except AddressError as exc:
            raise click.UsageError(f"invalid {source}: {exc}") from None
        return [(address, describe(address)) for address in addresses]


def _store_address(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(_Settings).address = value


_ADDRESS_HELP: Final = (
    "Server: host:port, unix:/path, beanstalk://host:port or unix:///path; "
    "tubes, stats, top, worker and exporter take a comma-separated list "
    f"[default: $BEANSTALKD_URL, else {DEFAULT_ADDRESS}]"
)


def _address_option(f: Any) -> Any:
    return click.option(
        "--address",
        "-a",
        metavar="ADDRESS",
        expose_value=False,
        callback=_store_address,
        is_eager=True,
        help=_ADDRESS_HELP,
    )(f)


def _json_option(f: Any) -> Any:
    return click.option(
        "--json", "as_json", is_flag=True, help="Machine-readable JSON output (stable keys)."
    )(f)


def _tube_option(f: Any) -> Any:
    return click.option(
        "--tube", "-t", default=DEFAULT_TUBE, show_default=True, help="The tube to work on."
    )(f)


def reason(exc: BaseException) -> str:
    """An error as the CLI shows it: the socket's own words where there are some."""
    cause: BaseException | None = exc
    while cause is not None:
        # BrokenConnectionError is an OSError too: look past it to the socket's error.
        if isinstance(cause, OSError) and not isinstance(cause, BrokenConnectionError):
            return cause.strerror or str(cause) or type(cause).__name__
        cause = cause.__cause__
    return str(exc) or type(exc).__name__


def _targets(ctx: click.Context) -> list[_Target]:
    return ctx.ensure_object(_Settings).targets()


def _target(ctx: click.Context) -> _Target:
    """The one server of a command that works on one; a list is an error."""
    targets = _targets(ctx)
    if len(targets) > 1:
        raise OneServer(f"{ctx.info_name} takes one server; got {len(targets)} addresses")
    return targets[0]


_T = TypeVar("_T")


class _Servers:
    """Several servers read in turn; one that cannot be reached or breaks is down
    (``None`` in the results), and is tried again on the next ``read``."""

    def __init__(self, targets: list[_Target]) -> None:
        self.targets = targets
        self.clients: dict[str, Client[bytes]] = {}
        #: Why each server was last down, by address as shown.
        self.errors: dict[str, str] = {}

    def read(self, fetch: Callable[[Client[bytes]], _T]) -> list[tuple[str, _T | None]]:
        """``fetch`` of each server in turn, with ``None`` for one that is down."""
        return [(shown, self._read(target, shown, fetch)) for target, shown in self.targets]

    def _read(
        self, target: tuple[str, int] | str, shown: str, fetch: Callable[[Client[bytes]], _T]
    ) -> _T | None:
        client = self.clients.get(shown)
        if client is None:
            try:
                client = Client(target, timeout=SOCKET_TIMEOUT)
            except (OSError, BrokenConnectionError, RemoteProtocolError) as exc:
                self.errors[shown] = f"cannot connect to {shown}: {reason(exc)}"
                return None
            self.clients[shown] = client
        try:
            return fetch(client)
        except (OSError, BrokenConnectionError, RemoteProtocolError) as exc:
            self.errors[shown] = f"connection to {shown} failed: {reason(exc)}"
            self.clients.pop(shown).close()
            return None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    def finish(self, ctx: click.Context) -> None:
        """Close; if a server was down, say why (one line each) and exit with status 2."""
        self.close()
        for message in self.errors.values():
            click.echo(f"Error: {message}", err=True)
        if self.errors:
            ctx.exit(2)


@contextlib.contextmanager
def _connect(
    ctx: click.Context,
    *,
    use: str | None = None,
    watch: str | Iterable[str] | None = None,
    address: tuple[tuple[str, int] | str, str] | None = None,
) -> Iterator[Client[bytes]]:
    target, shown = address if address is not None else _target(ctx)
    ctx.meta["beanproto.address"] = shown
    try:
        client = Client(target, use=use, watch=watch, timeout=SOCKET_TIMEOUT)
    except InvalidArgument as exc:
        raise click.UsageError(str(exc)) from None
    except (OSError, BrokenConnectionError, RemoteProtocolError) as exc:
        raise ConnectionFailed(f"cannot connect to {shown}: {reason(exc)}") from None
    with client:
        yield client


class _Group(click.Group):
    """Turns beanproto's exceptions into messages and exit statuses."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidArgument as exc:
            raise click.UsageError(str(exc)) from None
        except CommandError as exc:
            raise Refused(f"the server refused: {exc.reply or type(exc).__name__}") from None
        except (BrokenConnectionError, RemoteProtocolError) as exc:
            shown = ctx.meta.get("beanproto.address", "the server")
            raise ConnectionFailed(f"connection to {shown} failed: {reason(exc)}") from None
        except TimeoutError:
            shown = ctx.meta.get("beanproto.address", "the server")
            raise ConnectionFailed(f"{shown} did not answer within {SOCKET_TIMEOUT:g} s") from None


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        # Piped or captured: no wrapping at 80 columns.
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


def _binary_stream(stream: IO[str]) -> IO[bytes]:
    """The bytes under a text stream (``sys.stdin``/``sys.stdout``, or a test's)."""
    return cast(IO[bytes], getattr(stream, "buffer", stream))


def _print_stats(stats: ServerStats | TubeStats | JobStats, title: str) -> None:
    """A rich table on a terminal, else ``key<TAB>value`` lines."""
    console = _console()
    if console.is_terminal:
        console.print(key_value_table(stats, title))
    else:
        click.echo(key_value_text(stats), nl=False)


def _print_tubes(tube_list: list[TubeStats]) -> None:
    """A rich table on a terminal, else tab-separated lines with a header."""
    console = _console()
    if console.is_terminal:
        console.print(tubes_table(tube_list))
    else:
        click.echo(tubes_text(tube_list), nl=False)


def _emit_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def _tube_stats(client: Client[bytes]) -> list[TubeStats]:
    """Stats of every tube, sorted by name (a tube that vanished meanwhile is left out)."""
    out: list[TubeStats] = []
    for name in sorted(client.tubes()):
        try:
            out.append(client.stats_tube(name))
        except NotFoundError:
            continue
    return out


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@_address_option
@click.version_option(__version__, prog_name="beanproto")
def cli() -> None:
    """Inspect and operate a beanstalkd server.

    The server is given by --address (on the group or on any command), else by
    the BEANSTALKD_URL environment variable (beanstalk://host:port or
    unix:///path), else 127.0.0.1:11300. tubes, stats and top take several
    servers, separated by commas; a server that is down is shown as such.

    Exit status: 0 on success, 1 when the server refuses (e.g. no such job),
    2 for invalid input or when a server cannot be reached.
    """


# -- read commands -------------------------------------------------------------------------


@cli.command()
@_address_option
@_json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Show the server's statistics.

    Given several servers: one column per server and a total column (the
    counters summed); with --json, a list of {"server", "error", "stats"}.
    """
    targets = _targets(ctx)
    if len(targets) > 1:
        servers = _Servers(targets)
        per_server = servers.read(lambda c: c.stats())
        if as_json:
            _emit_json(
                [
                    {
                        "server": shown,
                        "error": servers.errors.get(shown) if value is None else None,
                        "stats": None if value is None else stats_dict(value),
                    }
                    for shown, value in per_server
                ]
            )
        elif _console().is_terminal:
            _console().print(servers_stats_table(per_server, f"{len(targets)} servers"))
        else:
            click.echo(servers_stats_text(per_server), nl=False)
        servers.finish(ctx)
        return
    with _connect(ctx) as c:
        result = c.stats()
    if as_json:
        _emit_json(stats_dict(result))
    else:
        _print_stats(result, f"server {ctx.meta['beanproto.address']}")


@cli.command()
@_address_option
@_json_option
@click.pass_context
def tubes(ctx: click.Context, as_json: bool) -> None:
    """One row per tube: urgent, ready, reserved, delayed, buried, waiting, paused.

    "paused" is the time left of a pause, blank when the tube is not paused. With
    --json, a list of every tube's full stats-tube fields.

    Given several servers: a server column; after each server's tubes a "*" row
    sums them, and "total" rows sum each tube over the servers. With --json, a
    list of {"server", "error", "tubes"}.
    """
    targets = _targets(ctx)
    if len(targets) > 1:
        servers = _Servers(targets)
        per_server = servers.read(_tube_stats)
        if as_json:
            _emit_json(
                [
                    {
                        "server": shown,
                        "error": servers.errors.get(shown) if value is None else None,
                        "tubes": None if value is None else [stats_dict(s) for s in value],
                    }
                    for shown, value in per_server
                ]
            )
        elif _console().is_terminal:
            _console().print(servers_tubes_table(per_server))
        else:
            click.echo(servers_tubes_text(per_server), nl=False)
        servers.finish(ctx)
        return
    with _connect(ctx) as c:
        result = _tube_stats(c)
    if as_json:
        _emit_json([stats_dict(s) for s in result])
    else:
        _print_tubes(result)


@cli.command("stats-job")
@_address_option
@_json_option
@click.argument("job_id", metavar="ID", type=_JOB_ID)
@click.pass_context
def stats_job(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """Show one job's statistics."""
    with _connect(ctx) as c:
        try:
            result = c.stats_job(job_id)
        except NotFoundError:
            raise Refused(f"job {job_id} not found") from None
    if as_json:
        _emit_json(stats_dict(result))
    else:
        _print_stats(result, f"job {job_id}")


@cli.command("stats-tube")
@_address_option
@_json_option
@click.argument("tube")
@click.pass_context
def stats_tube(ctx: click.Context, tube: str, as_json: bool) -> None:
    """Show one tube's statistics."""
    with _connect(ctx) as c:
        try:
            result = c.stats_tube(tube)
        except NotFoundError:
            raise Refused(_no_tube(tube)) from None
    if as_json:
        _emit_json(stats_dict(result))
    else:
        _print_stats(result, f"tube {tube}")


def _no_tube(tube: str) -> str:
    return f"tube {tube!r} not found (a tube exists while it has jobs or clients)"


_PEEK_STATES: Final = ("ready", "delayed", "buried")


@cli.command()
@_address_option
@_json_option
@_tube_option
@click.option("--raw", is_flag=True, help="Write the body's bytes, and nothing else, to stdout.")
@click.argument("what", metavar="ready|delayed|buried|ID")
@click.pass_context
def peek(ctx: click.Context, what: str, tube: str, raw: bool, as_json: bool) -> None:
    """Show a job: the next ready, delayed or buried one in --tube, or job ID.

    The body is shown as text when it is printable UTF-8, else escaped
    (Python repr style: b'\\x00...'); --raw writes the exact bytes, --json gives
    the text (or null) and the bytes in base64.
    """
    if raw and as_json:
        raise click.UsageError("--raw and --json cannot be used together")
    if what in _PEEK_STATES:
        with _connect(ctx, use=tube) as c:
            method: dict[str, Callable[[], Job[bytes]]] = {
                "ready": c.peek_ready,
                "delayed": c.peek_delayed,
                "buried": c.peek_buried,
            }
            try:
                job = method[what]()
            except NotFoundError:
                raise Refused(f"no {what} job in tube {tube!r}") from None
    else:
        if not (what.isascii() and what.isdigit()) or int(what) >= 2**64:
            raise click.BadParameter(
                f"{what!r} is not ready, delayed, buried or a job id", param_hint="WHAT"
            )
        job_id = int(what)
        with _connect(ctx) as c:
            try:
                job = c.peek(job_id)
            except NotFoundError:
                raise Refused(f"job {job_id} not found") from None
    _show_job(job, raw=raw, as_json=as_json)


def _show_job(job: Job[bytes], *, raw: bool, as_json: bool) -> None:
    if raw:
        out = _binary_stream(sys.stdout)
        out.write(job.body)
        out.flush()
    elif as_json:
        _emit_json(body_json(job.id, job.body))
    else:
        click.echo(f"job {job.id} ({len(job.body)} bytes)")
        click.echo(body_text(job.body))


# -- writing commands ----------------------------------------------------------------------


def _put_options(f: Any) -> Any:
    f = click.option(
        "--ttr", type=click.IntRange(1, 2**32 - 1), default=DEFAULT_TTR, show_default=True,
        help="Time to run, in seconds.",
    )(f)  # fmt: skip
    f = click.option("--delay", type=_U32, default=0, show_default=True, help="Delay, in seconds.")(
        f
    )
    f = click.option(
        "--priority", "-p", type=_U32, default=DEFAULT_PRIORITY, show_default=True,
        help="Priority (0 is the most urgent).",
    )(f)  # fmt: skip
    return f


def _stdin_size(stream: IO[bytes]) -> int | None:
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _lines(stream: IO[bytes], counter: list[int]) -> Iterator[bytes]:
    """Lines without their LF (or CRLF); blank lines are skipped. ``counter[0]``
    counts the bytes read."""
    for line in stream:
        counter[0] += len(line)
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        if line:
            yield line


def _batches(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@cli.command()
@_address_option
@_tube_option
@_put_options
@click.option(
    "--file", "-f", "path", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Put one job whose body is the file's content (- for all of stdin).",
)  # fmt: skip
@click.option(
    "--lines", "-l", is_flag=True, help="Put one job per line of standard input (same as BODY -)."
)
@click.argument("body", required=False)
@click.pass_context
def put(
    ctx: click.Context,
    body: str | None,
    path: str | None,
    lines: bool,
    tube: str,
    priority: int,
    delay: int,
    ttr: int,
) -> None:
    """Put jobs into --tube: BODY, --file PATH, or one per line of stdin (--lines or -).

    Lines are put in pipelined batches (blank lines are skipped), with a progress
    bar when stderr is a terminal. Prints the new job ids, or only their count
    beyond 100 jobs.
    """
    if body == "-":
        body, lines = None, True
    given = (body is not None) + (path is not None) + lines
    if given != 1:
        raise click.UsageError("give exactly one of BODY, --file PATH, or --lines (or -)")
    with _connect(ctx, use=tube) as c:
        if body is not None or path is not None:
            if body is not None:
                data = os.fsencode(body)
            elif path == "-":
                data = _binary_stream(sys.stdin).read()
            else:
                assert path is not None
                with open(path, "rb") as fh:
                    data = fh.read()
            click.echo(c.put(data, priority=priority, delay=delay, ttr=ttr))
            return
        _put_lines(c, tube, priority=priority, delay=delay, ttr=ttr)


def _progress_wanted() -> bool:
    """Show a progress bar for ``put --lines``: only when stderr is a terminal."""
    return sys.stderr.isatty()


def _put_lines(client: Client[bytes], tube: str, *, priority: int, delay: int, ttr: int) -> None:
    stream = _binary_stream(sys.stdin)
    counter = [0]
    ids: list[int] = []
    count = 0
    progress: Progress | None = None
    if _progress_wanted():
        progress = Progress(
            SpinnerColumn(),
            TextColumn("put"),
            BarColumn(),
            TextColumn("{task.fields[jobs]} jobs"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    with progress if progress is not None else contextlib.nullcontext():
        task = None
        if progress is not None:
            task = progress.add_task("put", total=_stdin_size(stream), jobs=0)
        for batch in _batches(_lines(stream, counter), BATCH_SIZE):
            try:
                new = client.put_many(batch, priority=priority, delay=delay, ttr=ttr)
            except CommandError as exc:
                outcomes = exc.outcomes or []
                count += sum(isinstance(o, int) for o in outcomes)
                refused = sum(not isinstance(o, int) for o in outcomes)
                raise Refused(
                    f"the server refused {refused} job(s) ({exc.reply}); "
                    f"{count} job(s) were put into tube {tube!r}"
                ) from None
            count += len(new)
            if len(ids) <= MAX_IDS_SHOWN:
                ids.extend(new[: MAX_IDS_SHOWN + 1 - len(ids)])
            if progress is not None and task is not None:
                progress.update(task, completed=counter[0], jobs=count)
    if count <= MAX_IDS_SHOWN:
        for job_id in ids:
            click.echo(job_id)
    else:
        click.echo(f"put {count} jobs into tube {tube!r}")


_ALL: Final = 2**32 - 1


@cli.command()
@_address_option
@click.option("--tube", "-t", default=None, help=f"The tube to work on.  [default: {DEFAULT_TUBE}]")
@click.option("--all-tubes", is_flag=True, help="Kick in every tube (BOUND per tube).")
@click.argument("bound", type=_U32, required=False)
@click.pass_context
def kick(ctx: click.Context, tube: str | None, all_tubes: bool, bound: int | None) -> None:
    """Kick up to BOUND buried jobs in --tube (or, if none is buried, delayed jobs).

    With --all-tubes, the same in every tube (BOUND is then optional: all of them),
    printing a line per tube that had jobs to kick, and the total.
    """
    if all_tubes:
        if tube is not None:
            raise click.UsageError("--tube and --all-tubes cannot be used together")
        with _connect(ctx) as c:
            total = 0
            for name in sorted(c.tubes()):
                c.use(name)
                count = c.kick(_ALL if bound is None else bound)
                if count:
                    click.echo(f"kicked {count} job(s) in tube {name!r}")
                total += count
        click.echo(f"kicked {total} job(s) in all tubes")
        return
    if bound is None:
        raise click.UsageError("missing argument BOUND (optional only with --all-tubes)")
    tube = DEFAULT_TUBE if tube is None else tube
    with _connect(ctx, use=tube) as c:
        count = c.kick(bound)
    click.echo(f"kicked {count} job(s) in tube {tube!r}")


@cli.command("kick-job")
@_address_option
@click.argument("job_id", metavar="ID", type=_JOB_ID)
@click.pass_context
def kick_job(ctx: click.Context, job_id: int) -> None:
    """Kick one buried or delayed job into the ready queue."""
    with _connect(ctx) as c:
        try:
            c.kick_job(job_id)
        except NotFoundError:
            raise Refused(f"job {job_id} not found, or not buried or delayed") from None
    click.echo(f"kicked job {job_id}")


@cli.command()
@_address_option
@click.argument("job_ids", metavar="ID...", type=_JOB_ID, nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, job_ids: tuple[int, ...]) -> None:
    """Delete jobs by id (pipelined). A job reserved by another client is "not found"."""
    with _connect(ctx) as c:
        try:
            c.delete_many(job_ids)
            outcomes: list[int | CommandError] = list(job_ids)
        except CommandError as exc:
            if exc.outcomes is None:
                raise
            outcomes = exc.outcomes
    missing: list[int] = []
    for job_id, outcome in zip(job_ids, outcomes, strict=True):
        if isinstance(outcome, int):
            click.echo(f"deleted job {job_id}")
        elif isinstance(outcome, NotFoundError):
            missing.append(job_id)
        else:
            raise Refused(f"job {job_id}: the server refused: {outcome.reply}")
    if len(missing) == 1:
        raise Refused(f"job {missing[0]} not found")
    if missing:
        raise Refused(f"jobs {', '.join(map(str, missing))} not found")


@cli.command()
@_address_option
@click.argument("tube")
@click.argument("seconds", type=_U32)
@click.pass_context
def pause(ctx: click.Context, tube: str, seconds: int) -> None:
    """Pause TUBE: no job is reserved from it for SECONDS (0 ends a pause)."""
    with _connect(ctx) as c:
        try:
            c.pause_tube(tube, seconds)
        except NotFoundError:
            raise Refused(_no_tube(tube)) from None
    if seconds:
        click.echo(f"paused tube {tube!r} for {seconds}s")
    else:
        click.echo(f"unpaused tube {tube!r}")


# -- long-running commands -----------------------------------------------------------------


def _release_all(client: Client[bytes], jobs: Iterable[int]) -> int:
    """Release jobs still reserved by ``client``, each with its priority unchanged."""
    released = 0
    for job_id in jobs:
        try:
            priority = client.stats_job(job_id).pri
            client.release(job_id, priority=priority)
        except NotFoundError:  # its TTR ran out and another client took it
            continue
        released += 1
    return released


@cli.command()
@_address_option
@_json_option
@click.option(
    "--tube", "-t", "tubes_", multiple=True, default=[DEFAULT_TUBE], show_default=True,
    help="Tube to watch (repeat for several).",
)  # fmt: skip
@click.option(
    "--delete/--release", "delete_", default=False, show_default=True,
    help="Delete each job after printing it, or release them back when tail stops.",
)  # fmt: skip
@click.option("--count", "-n", type=click.IntRange(min=1), help="Stop after N jobs.")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Stop after S seconds without a new job."
)
@click.pass_context
def tail(
    ctx: click.Context,
    tubes_: tuple[str, ...],
    delete_: bool,
    count: int | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Reserve jobs as they come and print them, one line each ("ID<TAB>body").

    With --release (the default) jobs stay reserved while tail runs, so each is
    shown once, and are released back with their priority unchanged when it
    stops (also on Ctrl-C: the server releases a closed connection's jobs).
    With --delete each job is deleted once printed. --json prints one JSON
    object per line.
    """
    held: dict[int, None] = {}
    shown = 0
    with _connect(ctx, watch=list(tubes_)) as c:
        deadline = None if timeout is None else time.monotonic() + timeout
        polled_late = False  # one reserve was made after the deadline passed
        try:
            while count is None or shown < count:
                wait: float | None = None
                if deadline is not None:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        if polled_late:
                            break
                        polled_late, wait = True, 0
                try:
                    job = c.reserve(timeout=wait)
                except TimedOutError:
                    break
                except DeadlineSoonError:
                    # A held job's TTR is about to run out: it will come back to the
                    # ready queue and be reserved again (and not shown again).
                    time.sleep(0.2)
                    continue
                if job.id in held:
                    continue
                if as_json:
                    click.echo(json.dumps(body_json(job.id, job.body)))
                else:
                    click.echo(f"{job.id}\t{body_text(job.body, multiline=False)}")
                shown += 1
                if delete_:
                    c.delete(job)
                else:
                    held[job.id] = None
                if timeout is not None:
                    deadline, polled_late = time.monotonic() + timeout, False
        except KeyboardInterrupt:
            # The interrupted reserve closed the connection: the server released the jobs.
            click.echo(f"interrupted: {shown} job(s) shown", err=True)
            ctx.exit(130)
        released = _release_all(c, held) if not delete_ else 0
    what = "deleted" if delete_ else f"{released} released"
    click.echo(f"{shown} job(s) shown, {what}", err=True)


@cli.command()
@_address_option
@click.option("--tube", "-t", required=True, help="The tube to empty.")
@click.option(
    "--state", "states", multiple=True, type=click.Choice(_PEEK_STATES),
    help="Delete only jobs in this state (repeat for several)  [default: all three]",
)  # fmt: skip
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def flush(ctx: click.Context, tube: str, states: tuple[str, ...], yes: bool) -> None:
    """Delete every ready, delayed and buried job in --tube (asks first unless --yes).

    --state limits it to jobs in that state (repeatable). Reserved jobs are left alone.
    """
    chosen = [state for state in _PEEK_STATES if not states or state in states]
    with _connect(ctx) as c:
        try:  # before ``use``, which would create the tube
            before = c.stats_tube(tube)
        except NotFoundError:
            click.echo(f"tube {tube!r} does not exist: nothing to flush")
            return
        present = {
            "ready": before.current_jobs_ready,
            "delayed": before.current_jobs_delayed,
            "buried": before.current_jobs_buried,
        }
        total = sum(present[state] for state in chosen)
        listed = ", ".join(f"{present[state]} {state}" for state in chosen)
        if total == 0:
            click.echo(f"tube {tube!r} has no {' or '.join(chosen)} jobs")
            return
        if not yes:
            click.confirm(f"Delete {total} job(s) from tube {tube!r} ({listed})?", abort=True)
        c.use(tube)
        counts: dict[str, int] = {}
        peeks: dict[str, Callable[[], Job[bytes]]] = {
            "ready": c.peek_ready,
            "delayed": c.peek_delayed,
            "buried": c.peek_buried,
        }
        for state in chosen:
            peek_next = peeks[state]
            n = 0
            while True:
                try:
                    job = peek_next()
                except NotFoundError:
                    break
                try:
                    c.delete(job.id)
                except NotFoundError:  # reserved by someone meanwhile
                    continue
                n += 1
            counts[state] = n
        reserved = c.stats_tube(tube).current_jobs_reserved if sum(counts.values()) else 0
    done = ", ".join(f"{counts[state]} {state}" for state in chosen)
    click.echo(f"deleted {sum(counts.values())} job(s) from tube {tube!r}: {done}")
    if reserved:
        click.echo(f"{reserved} reserved job(s) left alone")


@cli.command()
@_address_option
@click.option("--from-tube", required=True, help="Take ready jobs from this tube.")
@click.option("--to-tube", required=True, help="Put them into this tube.")
@click.option(
    "--to-address", metavar="ADDRESS",
    help="Put them on this server instead (same forms as --address).",
)  # fmt: skip
@click.option("--count", "-n", type=click.IntRange(min=1), help="Move at most N jobs.")
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=0, show_default=True,
    help="Wait up to S seconds for more jobs (0: stop when no job is ready).",
)  # fmt: skip
@click.pass_context
def move(
    ctx: click.Context,
    from_tube: str,
    to_tube: str,
    to_address: str | None,
    count: int | None,
    timeout: float,
) -> None:
    """Move ready jobs from one tube (or server) to another, without losing any.

    Each job is reserved from --from-tube, put into --to-tube with the same
    body, priority and TTR, and only then deleted from the source. If the move
    is interrupted, no job is lost: at most one job ends up in both tubes.
    Only ready jobs move (kick buried and delayed jobs first to move them);
    jobs get new ids in the target tube.
    """
    source = _target(ctx)
    if to_address is None:
        target = source
    else:
        try:
            parsed = parse_address(to_address)
        except AddressError as exc:
            raise click.BadParameter(str(exc), param_hint="--to-address") from None
        target = (parsed, describe(parsed))
    if target[0] == source[0] and from_tube == to_tube:
        raise click.UsageError("--from-tube and --to-tube are the same tube on the same server")
    moved = 0
    with (
        _connect(ctx, watch=from_tube, address=source) as src,
        _connect(ctx, use=to_tube, address=target) as dst,
    ):
        ctx.meta["beanproto.address"] = f"{source[1]} or {target[1]}"
        try:
            while count is None or moved < count:
                try:
                    job = src.reserve(timeout=timeout)
                except TimedOutError:
                    break
                except DeadlineSoonError:  # pragma: no cover - we hold no job
                    time.sleep(0.2)
                    continue
                job_stats = src.stats_job(job)
                try:
                    dst.put(job.body, priority=job_stats.pri, ttr=job_stats.ttr)
                except CommandError as exc:
                    src.release(job, priority=job_stats.pri)
                    raise Refused(
                        f"the target refused job {job.id} ({exc.reply}); it was left in "
                        f"tube {from_tube!r}; {moved} job(s) moved"
                    ) from None
                src.delete(job)
                moved += 1
        except KeyboardInterrupt:
            click.echo(f"interrupted: {moved} job(s) moved", err=True)
            ctx.exit(130)
    click.echo(f"moved {moved} job(s) from tube {from_tube!r} to tube {to_tube!r}")


# -- operator commands: bury, dump, restore (pipelined: Client.pipeline) -------------------


class BadInput(click.ClickException):
    """The input of ``restore`` is not what ``dump`` writes (exit status 2, one line)."""

    exit_code = 2


def _progress(what: str) -> Progress | None:
    """A transient progress bar on stderr, only when stderr is a terminal."""
    if not _progress_wanted():
        return None
    return Progress(
        SpinnerColumn(),
        TextColumn(what),
        BarColumn(),
        TextColumn("{task.fields[jobs]} jobs"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@cli.command()
@_address_option
@click.option("--tube", "-t", required=True, help="The tube whose ready jobs to bury.")
@click.option(
    "--count", "-n", type=click.IntRange(min=1),
    help="Bury at most N jobs  [default: the jobs ready when bury starts]",
)  # fmt: skip
@click.pass_context
def bury(ctx: click.Context, tube: str, count: int | None) -> None:
    """Bury ready jobs of --tube, each with its priority unchanged.

    Jobs are reserved (reserve-with-timeout 0) and buried in pipelined batches.
    Without --count, as many jobs as were ready at the start (jobs put meanwhile
    may be among them). If bury is interrupted, a job reserved but not yet
    buried goes back to the ready queue: no job is lost.
    """
    buried_count = 0
    with _connect(ctx) as p:
        try:
            ready = tube_stats(p.pipeline([StatsTube(tube)])[0]).current_jobs_ready
        except NotFoundError:
            ready = 0
        goal = ready if count is None else count
        setup: list[Command] = [Watch(tube)]
        if tube != DEFAULT_TUBE:
            setup.append(Ignore(DEFAULT_TUBE))
        for event in p.pipeline(setup):
            watch_count(event)
        try:
            while buried_count < goal:
                wanted = min(BATCH_SIZE, goal - buried_count)
                ids: list[int] = []
                for event in p.pipeline([ReserveWithTimeout(0)] * wanted):
                    if isinstance(event, Reserved):
                        ids.append(event.id)
                    elif not isinstance(event, TimedOut | DeadlineSoon):
                        raise error_for_event(event)
                if not ids:
                    break
                priorities = [
                    (job_id, event.pri)
                    for job_id, event in zip(
                        ids, p.pipeline([StatsJob(i) for i in ids]), strict=True
                    )
                    if isinstance(event, JobStats)  # else its TTR ran out: not ours now
                ]
                replies = p.pipeline([Bury(job_id, pri) for job_id, pri in priorities])
                buried_count += sum(isinstance(event, Buried) for event in replies)
                if len(ids) < wanted:
                    break
        except KeyboardInterrupt:
            click.echo(f"interrupted: {buried_count} job(s) buried", err=True)
            ctx.exit(130)
    click.echo(f"buried {buried_count} job(s) in tube {tube!r}")


@cli.command()
@_address_option
@click.option(
    "--tube", "-t", "tubes_", multiple=True,
    help="Only the jobs of this tube (repeat for several)  [default: every tube]",
)  # fmt: skip
@click.option(
    "--state", "states", multiple=True, type=click.Choice(STATES),
    help="Only the jobs in this state (repeat for several)  [default: every state]",
)  # fmt: skip
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
    help="Write to this file instead of standard output.",
)  # fmt: skip
@click.pass_context
def dump(ctx: click.Context, tubes_: tuple[str, ...], states: tuple[str, ...], output: str) -> None:
    """Write jobs as JSON Lines, one object per job, changing nothing on the server.

    Each object has id, tube, state, priority, delay (the delay left of a
    delayed job, else 0), ttr, and "body" (the text, when the body is UTF-8)
    or "body_base64". Jobs are found by id: pipelined stats-job and peek over
    ids 1 to the server's total-jobs, so jobs in every state, reserved ones
    included, are read without being reserved; jobs put meanwhile are left
    out. The number of jobs goes to stderr; a progress bar too when stderr is
    a terminal.
    """
    written = 0
    with _connect(ctx) as p, click.open_file(output, "w", encoding="utf-8") as out:
        total = server_stats(p.pipeline([Stats()])[0]).total_jobs
        progress = _progress("dump")
        with progress if progress is not None else contextlib.nullcontext():
            task = None if progress is None else progress.add_task("dump", total=total, jobs=0)
            for start in range(1, total + 1, BATCH_SIZE):
                ids = range(start, min(start + BATCH_SIZE, total + 1))
                chosen: list[JobStats] = []
                for event in p.pipeline([StatsJob(i) for i in ids]):
                    if isinstance(event, JobStats):
                        if (not tubes_ or event.tube in tubes_) and (
                            not states or event.state in states
                        ):
                            chosen.append(event)
                    elif not isinstance(event, NotFound):
                        raise error_for_event(event)
                if chosen:
                    bodies = p.pipeline([Peek(st.id) for st in chosen])
                    for st, event in zip(chosen, bodies, strict=True):
                        if isinstance(event, Found):  # else deleted meanwhile
                            record = job_record(st, event.body)
                            out.write(json.dumps(record, ensure_ascii=False) + "\n")
                            written += 1
                if progress is not None and task is not None:
                    progress.update(task, completed=ids.stop - 1, jobs=written)
    click.echo(f"dumped {written} job(s)", err=True)


def _records(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the non-blank lines."""
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield number, line


@cli.command()
@_address_option
@click.option("--tube", "-t", default=None, help="Put every job into this tube instead.")
@click.option(
    "--input", "-i", "input_", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    default="-", help="Read this file instead of standard input.",
)  # fmt: skip
@click.pass_context
def restore(ctx: click.Context, tube: str | None, input_: str) -> None:
    """Put back the jobs of a dump (JSON Lines on stdin, or --input FILE).

    Each job is put into its tube (or --tube) with its priority, delay left and
    TTR, in the order of the input; it gets a new id. Reserved jobs come back
    ready; buried jobs are put, reserved by id (reserve-job, beanstalkd 1.12+)
    and buried with their priority. Prints the count per tube and state. A line
    that is not a job stops restore before its batch is put (exit status 2).
    """
    if tube is not None:
        Use(tube)  # an invalid name is a usage error before anything is read
    counts: dict[str, dict[str, int]] = {}
    restored = 0
    with contextlib.ExitStack() as stack:
        if input_ == "-":
            stream = _binary_stream(sys.stdin)
        else:
            stream = stack.enter_context(open(input_, "rb"))
        p = stack.enter_context(_connect(ctx))
        used = DEFAULT_TUBE
        records = _records(stream)
        while True:
            batch = list(itertools.islice(records, BATCH_SIZE))
            if not batch:
                break
            commands: list[Command] = []
            jobs: list[tuple[str, DumpedJob]] = []
            for number, line in batch:
                try:
                    job = parse_record(line)
                    target = tube or job.tube
                    if target != used:
                        commands.append(Use(target))
                        used = target
                    commands.append(Put(job.body, job.priority, job.delay, job.ttr))
                except (RecordError, InvalidArgument) as exc:
                    raise BadInput(
                        f"line {number}: {exc}; {restored} job(s) were restored before it"
                    ) from None
                jobs.append((target, job))
            puts = [e for e in p.pipeline(commands) if not isinstance(e, Using)]
            to_bury: list[tuple[int, int]] = []
            refused: list[str] = []
            for (target, job), event in zip(jobs, puts, strict=True):
                if not isinstance(event, Inserted):
                    refused.append(type(event).__name__)
                    continue
                restored += 1
                state = "buried" if job.state == "buried" else "delayed" if job.delay else "ready"
                per_tube = counts.setdefault(target, {"ready": 0, "delayed": 0, "buried": 0})
                per_tube[state] += 1
                if state == "buried":
                    to_bury.append((event.id, job.priority))
            if to_bury:
                commands = []
                for job_id, pri in to_bury:
                    commands += [ReserveJob(job_id), Bury(job_id, pri)]
                events = p.pipeline(commands)
                failed = sum(not isinstance(e, Buried) for e in events[1::2])
                if failed:
                    first = next(e for e in events[0::2] if not isinstance(e, Reserved))
                    raise Refused(
                        f"{failed} job(s) could not be buried again ({error_for_event(first)}; "
                        "reserve-job needs beanstalkd 1.12+): they were restored ready"
                    )
            if refused:
                raise Refused(
                    f"the server refused {len(refused)} job(s) ({refused[0]}); "
                    f"{restored} job(s) were restored"
                )
    click.echo(f"restored {restored} job(s)")
    for name in sorted(counts):
        c = counts[name]
        click.echo(
            f"  tube {name!r}: {c['ready']} ready, {c['delayed']} delayed, {c['buried']} buried"
        )


@cli.command()
@_address_option
@click.option(
    "--interval", type=click.FloatRange(min=0), default=2.0, show_default=True,
    help="Seconds between refreshes.",
)  # fmt: skip
@click.option("--iterations", "-n", type=click.IntRange(min=1), help="Stop after N frames.")
@click.pass_context
def top(ctx: click.Context, interval: float, iterations: int | None) -> None:
    """A live, refreshing view of the server and its tubes (Ctrl-C to quit).

    Given several servers: a summary line per server, then their tubes with a
    server column and totals (as tubes shows them).
    """
    targets = _targets(ctx)
    if len(targets) > 1:
        _top_servers(ctx, targets, interval, iterations)
        return
    console = _console()
    with _connect(ctx) as c:
        shown = ctx.meta["beanproto.address"]
        previous = None
        last = 0.0

        def frame() -> Any:
            nonlocal previous, last
            server = c.stats()
            tube_list = _tube_stats(c)
            now = time.monotonic()
            rendered = top_frame(
                server, tube_list, address=shown, previous=previous, elapsed=now - last
            )
            previous, last = server, now
            return rendered

        def plain_frame() -> str:
            # Not a terminal: the summary line, then the tubes as tab-separated lines.
            nonlocal previous, last
            server = c.stats()
            tube_list = _tube_stats(c)
            now = time.monotonic()
            summary = top_summary(server, address=shown, previous=previous, elapsed=now - last)
            previous, last = server, now
            return f"{summary}\n{tubes_text(tube_list)}"

        frames = 0
        try:
            if console.is_terminal:  # pragma: no cover - tests render frames directly
                with Live(frame(), console=console, auto_refresh=False) as live:
                    frames = 1
                    while iterations is None or frames < iterations:
                        time.sleep(interval)
                        live.update(frame(), refresh=True)
                        frames += 1
            else:
                while iterations is None or frames < iterations:
                    if frames:
                        time.sleep(interval)
                    click.echo(plain_frame())
                    frames += 1
        except KeyboardInterrupt:
            pass


def _top_servers(
    ctx: click.Context, targets: list[_Target], interval: float, iterations: int | None
) -> None:
    console = _console()
    servers = _Servers(targets)
    previous: dict[str, tuple[ServerStats, float]] = {}

    def read() -> tuple[list[str], list[tuple[str, list[TubeStats] | None]]]:
        summaries: list[str] = []
        per_server = servers.read(lambda c: (c.stats(), _tube_stats(c)))
        now = time.monotonic()
        for shown, value in per_server:
            if value is None:
                summaries.append(f"down: {servers.errors[shown]}")
                previous.pop(shown, None)
                continue
            before, last = previous.get(shown, (None, now))
            summaries.append(
                top_summary(value[0], address=shown, previous=before, elapsed=now - last)
            )
            previous[shown] = (value[0], now)
        return summaries, [(s, None if v is None else v[1]) for s, v in per_server]

    frames = 0
    try:
        if console.is_terminal:  # pragma: no cover - tests render frames directly
            with Live(servers_top_frame(*read()), console=console, auto_refresh=False) as live:
                frames = 1
                while iterations is None or frames < iterations:
                    time.sleep(interval)
                    live.update(servers_top_frame(*read()), refresh=True)
                    frames += 1
        else:
            while iterations is None or frames < iterations:
                if frames:
                    time.sleep(interval)
                summaries, per_server = read()
                click.echo("\n".join(summaries))
                click.echo(servers_tubes_text(per_server))
                frames += 1
    except KeyboardInterrupt:
        pass
    servers.finish(ctx)


def main(argv: list[str] | None = None) -> None:
    """Run the ``beanproto`` command (the console script's entry point)."""
    cli.main(args=argv, prog_name="beanproto")


# -- workers -------------------------------------------------------------------------------


@cli.command(context_settings={"show_default": True})
@_address_option
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--tube",
    "-t",
    "tubes",
    multiple=True,
    help=f"A tube to watch (repeat for several)  [default: {DEFAULT_TUBE}]",
)
@click.option(
    "--concurrency", "-c", type=click.IntRange(1, 10_000), default=1, help="Handlers at once."
)
@click.option(
    "--backend",
    type=click.Choice(["sync", "asyncio", "trio"]),
    default=None,
    help="[default: sync for a function, asyncio for an async def]",
    show_default=False,
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1),
    default=WORKER_DEFAULTS["max_attempts"],
    help="Attempts before a failing job is buried.",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(0, 86400),
    default=WORKER_DEFAULTS["retry_delay"],
    metavar="SECONDS",
    help="Delay of the first retry; it doubles with each attempt.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 86400),
    default=WORKER_DEFAULTS["grace"],
    metavar="SECONDS",
    help="How long running handlers may finish once stopping.",
)
@click.option(
    "--encoding",
    default=None,
    help="Decode bodies (e.g. utf-8): handlers get str; a body that does not decode is buried.",
)
@click.option(
    "--burst", is_flag=True, help="Exit 0 once the tubes have no ready job and no handler runs."
)
@click.option(
    "--metrics",
    metavar="HOST:PORT",
    default=None,
    help="Serve the worker's Prometheus metrics at http://HOST:PORT/metrics "
    "(the [prometheus] extra).",
)
@click.pass_context
def worker(
    ctx: click.Context,
    target: str,
    tubes: tuple[str, ...],
    concurrency: int,
    backend: str | None,
    max_attempts: int,
    retry_delay: float,
    grace: float,
    encoding: str | None,
    burst: bool,
    metrics: str | None,
) -> None:
    """Run the handler MODULE:ATTR on the jobs of the tubes, like rq worker.

    MODULE:ATTR names a function (plain: run in threads; async def: run in
    tasks) called with each job, or a beanproto_sync/beanproto_anyio Worker
    (which has its own address, tubes and options). The current directory is
    searched first. A handler that returns deletes the job; one that raises
    releases it with a delay that doubles with each attempt, and after
    --max-attempts buries it.

    SIGTERM or SIGINT stop gracefully (exit 0): no new job; running handlers
    get --grace seconds, then their jobs go back to the server. A second SIGINT
    stops at once (exit 130).
    """
    targets = _targets(ctx)  # several: the worker serves them all
    shown = ", ".join(t[1] for t in targets)
    ctx.meta["beanproto.address"] = shown
    if encoding is not None:
        try:
            "".encode(encoding)
        except LookupError:
            raise click.BadParameter(
                f"unknown encoding {encoding!r}", param_hint="--encoding"
            ) from None

    def check(watched: tuple[str, ...]) -> None:
        # One short connection: a server is there and takes the tubes. With
        # several, one that is up is enough: the worker reconnects the others.
        failure: ConnectionFailed | None = None
        for one in targets:
            try:
                with _connect(ctx, watch=list(watched), address=one):
                    return
            except ConnectionFailed as exc:
                failure = failure or exc
        assert failure is not None
        raise failure

    status = run_worker(
        ctx,
        target,
        address=[t[0] for t in targets] if len(targets) > 1 else targets[0][0],
        shown=shown,
        tubes=tubes,
        concurrency=concurrency,
        backend=backend,
        max_attempts=max_attempts,
        retry_delay=retry_delay,
        grace=grace,
        encoding=encoding,
        burst=burst,
        check=check,
        metrics=metrics,
    )
    ctx.exit(status)


# -- monitoring ----------------------------------------------------------------------------


@cli.command(context_settings={"show_default": True})
@_address_option
@click.option(
    "--listen", metavar="HOST:PORT", default="127.0.0.1:9474",
    help="Where to serve /metrics (:PORT for every interface).",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, metavar="SECONDS",
    help="How long a scrape waits for the servers (read at once) before one is down.",
)  # fmt: skip
@click.option("--once", is_flag=True, help="Print the metrics once to stdout and exit.")
@click.pass_context
def exporter(ctx: click.Context, listen: str, timeout: float, once: bool) -> None:
    """Serve the servers' statistics to Prometheus at /metrics (the [prometheus] extra).

    Each scrape reads every server (stats, and stats-tube of each tube) with a fresh
    connection: beanstalkd_<field> per server, beanstalkd_tube_<field> per tube,
    beanstalkd_up (0 for a server that did not answer within --timeout), with a
    server label when --address lists several. SIGTERM or SIGINT exit 0. With
    --once: print one scrape (exit status 2 if a server was down).
    """
    run_exporter = exporter_module("beanproto exporter").run_exporter
    ctx.exit(run_exporter(_targets(ctx), listen=listen, timeout=timeout, once=once))
