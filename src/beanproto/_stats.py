"""The hand-written parser for the YAML that ``stats``, ``stats-job``, ``stats-tube``,
``list-tubes`` and ``list-tubes-watched`` return.

Theory of operation: beanstalkd does not really speak YAML; it ``printf``s a flat document,
``---\\n`` then one ``key: value\\n`` line per key (or one ``- item\\n`` line per tube), with
quoting that changed between versions (1.11 quotes ``version``, 1.13 quotes ``hostname``,
``os``, ``platform``, ``name`` and ``tube``). A general YAML loader mistypes that output:
PyYAML reads 1.10's ``version: 1.10`` as the float 1.1, the ``os: #1 SMP ...`` of 1.12 as
``None`` (``#`` starts a comment), a macOS ``os`` with a colon as an error, and a tube named
``1.0`` or ``null`` as a float or ``None``. So each line is split by hand at its first
``": "`` and converted by a per-type table (key -> attribute, converter) derived once, at
import, from the dataclass fields: the annotation picks the converter, and a default of
``None`` marks a key older servers lack. A field without default is a key every version
1.10-1.13 sends; its type says what those versions send, but a server that omits it (a
fork, a future version) gets ``None`` for it rather than a dead connection: the stats are
for reading, and one missing counter must not cost the caller the others. A key that is
there with a malformed value is a :class:`RemoteProtocolError`. One pass, cost linear in
the payload.

Unknown keys are kept, raw, in ``extra`` rather than dropped or rejected: a newer server
that adds a key must not break the connection, and its value stays available to callers
before this table learns about it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._errors import RemoteProtocolError

__all__ = [
    "JobStats",
    "ServerStats",
    "TubeStats",
    "parse_job_stats",
    "parse_server_stats",
    "parse_tube_list",
    "parse_tube_stats",
]


def _no_extra() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ServerStats:
    """The reply to ``stats``: the server's counters and identity.

    Attributes are the keys of beanstalkd 1.10-1.13 with ``-`` replaced by ``_``. Keys
    that only 1.12+ sends (``draining``, ``os``, ``platform``) are ``None`` on older
    servers. Keys this version of beanproto does not know are in :attr:`extra`.

    A server that omits a key every version 1.10-1.13 sends (a fork, a future version)
    gives ``None`` for that attribute, whatever its annotation; a key sent with a
    malformed value is a :class:`~beanproto.RemoteProtocolError`.
    """

    """Jobs currently in the server, by state (``urgent`` is ready with pri < 1024)."""
    current_jobs_urgent: int
    current_jobs_ready: int
    current_jobs_reserved: int
    current_jobs_delayed: int
    current_jobs_buried: int

    """How many times each command was received since the server started."""
    cmd_put: int
    cmd_peek: int
    cmd_peek_ready: int
    cmd_peek_delayed: int
    cmd_peek_buried: int
    cmd_reserve: int
    cmd_reserve_with_timeout: int
    cmd_delete: int
    cmd_release: int
    cmd_use: int
    cmd_watch: int
    cmd_ignore: int
    cmd_bury: int
    cmd_kick: int
    cmd_touch: int
    cmd_stats: int
    cmd_stats_job: int
    cmd_stats_tube: int
    cmd_list_tubes: int
    cmd_list_tube_used: int
    cmd_list_tubes_watched: int
    cmd_pause_tube: int

    """Job, tube and connection totals and limits."""
    job_timeouts: int
    total_jobs: int
    max_job_size: int
    current_tubes: int
    current_connections: int
    current_producers: int
    current_workers: int
    current_waiting: int
    total_connections: int

    """The process: its pid, version (``"1.10"``, never a float), CPU seconds, uptime."""
    pid: int
    version: str
    rusage_utime: float
    rusage_stime: float
    uptime: int

    """The binlog (all zero without ``-b``)."""
    binlog_oldest_index: int
    binlog_current_index: int
    binlog_records_migrated: int
    binlog_records_written: int
    binlog_max_size: int

    """Identity: a random 16-hex-digit id chosen at startup, and the host's name."""
    id: str
    hostname: str

    """Sent since 1.12 only (``None`` before): drain mode, ``uname`` version and machine."""
    draining: bool | None = None
    os: str | None = None
    platform: str | None = None

    """Keys unknown to this table, with their raw values (quotes kept), in a read-only map."""
    extra: Mapping[str, str] = field(default_factory=_no_extra, hash=False)


@dataclass(frozen=True, slots=True)
class JobStats:
    """The reply to ``stats-job <id>``: one job's state and history.

    Keys this version of beanproto does not know are in :attr:`extra`.

    A server that omits a key every version 1.10-1.13 sends (a fork, a future version)
    gives ``None`` for that attribute, whatever its annotation; a key sent with a
    malformed value is a :class:`~beanproto.RemoteProtocolError`.
    """

    """Identity and placement: the job's id, its tube and its state (``"ready"``,
    ``"delayed"``, ``"reserved"`` or ``"buried"``)."""
    id: int
    tube: str
    state: str

    """Scheduling, in seconds: priority, age, the delay last set, time-to-run, and the
    time left until a reserved job times out or a delayed job becomes ready."""
    pri: int
    age: int
    delay: int
    ttr: int
    time_left: int

    """The binlog file holding the job (0 without ``-b``)."""
    file: int

    """How many times the job went through each transition."""
    reserves: int
    timeouts: int
    releases: int
    buries: int
    kicks: int

    """Keys unknown to this table, with their raw values (quotes kept), in a read-only map."""
    extra: Mapping[str, str] = field(default_factory=_no_extra, hash=False)


@dataclass(frozen=True, slots=True)
class TubeStats:
    """The reply to ``stats-tube <tube>``: one tube's jobs, clients and pause.

    Keys this version of beanproto does not know are in :attr:`extra`.

    A server that omits a key every version 1.10-1.13 sends (a fork, a future version)
    gives ``None`` for that attribute, whatever its annotation; a key sent with a
    malformed value is a :class:`~beanproto.RemoteProtocolError`.
    """

    """The tube's name (``"1.0"`` stays a string)."""
    name: str

    """Jobs in the tube, by state, and the total ever put into it."""
    current_jobs_urgent: int
    current_jobs_ready: int
    current_jobs_reserved: int
    current_jobs_delayed: int
    current_jobs_buried: int
    total_jobs: int

    """Connections using, watching, and waiting on (reserving from) the tube."""
    current_using: int
    current_watching: int
    current_waiting: int

    """Command counts, and the pause in seconds (length, and time left) if paused."""
    cmd_delete: int
    cmd_pause_tube: int
    pause: int
    pause_time_left: int

    """Keys unknown to this table, with their raw values (quotes kept), in a read-only map."""
    extra: Mapping[str, str] = field(default_factory=_no_extra, hash=False)


# --- converters -----------------------------------------------------------------------------
# Each takes the value text after ``": "`` and returns the Python value, or raises
# ValueError with a short reason that the parse loop turns into a RemoteProtocolError.

# u64 and i64 have at most 20 digits. The cap also keeps int() away from CPython's
# 4300-digit limit (a ValueError of its own) and from quadratic conversion time.
_MAX_DIGITS = 20


def _unsigned(value: str) -> int:
    if 0 < len(value) <= _MAX_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError("expected an unsigned decimal integer")


def _signed(value: str) -> int:
    digits = value[1:] if value[:1] == "-" else value
    if 0 < len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit():
        return int(value)
    raise ValueError("expected a decimal integer")


_FLOAT = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")


def _seconds(value: str) -> float:
    # beanstalkd prints rusage as "%d.%06d"; nothing else (exponents, inf, nan) is valid.
    if _FLOAT.fullmatch(value):
        return float(value)
    raise ValueError("expected seconds as digits.digits")


_BOOLS = {"true": True, "false": False}


def _bool(value: str) -> bool:
    try:
        return _BOOLS[value]
    except KeyError:
        raise ValueError("expected true or false") from None


def _text(value: str) -> str:
    # Quoted values never contain '"' or '\\' (see the module docstring), so stripping one
    # pair of quotes is the whole of YAML's double-quoted scalar syntax we need.
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


# Keys that some version 1.10-1.13 prints with a signed conversion (%d, %ld, PRId64).
# time-left and pause-time-left are negative in practice (a job past its deadline); age
# can be after a wall-clock step back (1.12 reads gettimeofday). Accepting a sign on the
# rest costs nothing and keeps a connection alive that rejecting it would kill.
_SIGNED_KEYS = frozenset(
    {
        # ServerStats
        "pid",
        "binlog-oldest-index",
        "binlog-current-index",
        "binlog-records-migrated",
        "binlog-records-written",
        "binlog-max-size",
        # JobStats
        "age",
        "delay",
        "ttr",
        "time-left",
        "file",
        # TubeStats
        "pause",
        "pause-time-left",
    }
)

# Field annotations are strings (``from __future__ import annotations``); each one used
# by a stats class maps to its converter. A new annotation fails loudly at import.
_CONVERTERS: dict[str, Callable[[str], object]] = {
    "int": _unsigned,
    "float": _seconds,
    "str": _text,
    "str | None": _text,
    "bool | None": _bool,
}


@dataclass(frozen=True, slots=True)
class _Schema:
    """What the parse loop needs to know about one stats type, built once at import."""

    what: str
    cls: type[Any]
    # wire key -> (attribute name, converter)
    keys: dict[str, tuple[str, Callable[[str], object]]]
    # attribute names of the fields without a default, in declaration order
    required: tuple[str, ...]


def _schema(cls: type[Any], what: str) -> _Schema:
    keys: dict[str, tuple[str, Callable[[str], object]]] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name == "extra":
            continue
        wire = f.name.replace("_", "-")
        annotation = f.type if isinstance(f.type, str) else f.type.__name__
        convert = _CONVERTERS[annotation]
        if convert is _unsigned and wire in _SIGNED_KEYS:
            convert = _signed
        keys[wire] = (f.name, convert)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return _Schema(what, cls, keys, tuple(required))


_SERVER = _schema(ServerStats, "stats")
_JOB = _schema(JobStats, "stats-job")
_TUBE = _schema(TubeStats, "stats-tube")

# What a key we do not know may look like: a future beanstalkd key, not an indented
# (nested YAML) line, a list item or a stray fragment of text.
_UNKNOWN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


# --- the parse loop ---------------------------------------------------------------------------


def _show(line: str) -> str:
    """A line for an error message: repr, cut to about 80 characters."""
    if len(line) > 80:
        return repr(line[:80]) + "..."
    return repr(line)


def _lines(payload: bytes, what: str) -> list[str]:
    """Check the document frame and return its lines, without the header and the LFs."""
    # UTF-8 with surrogateescape: beanstalkd writes ASCII except where it copies host data
    # (hostname, uname), which may be in any encoding. surrogateescape never fails, keeps
    # the bytes recoverable (``s.encode("utf-8", "surrogateescape")``) and never makes two
    # different values equal, which "replace" would do; latin-1 would mangle valid UTF-8.
    text = str(payload, "utf-8", "surrogateescape")
    if not text.startswith("---\n"):
        raise RemoteProtocolError(f"{what} payload does not start with '---\\n': {_show(text)}")
    if "\r" in text:
        raise RemoteProtocolError(f"{what} payload has a CR in it (lines end in LF only)")
    if not text.endswith("\n"):
        raise RemoteProtocolError(f"{what} payload does not end with a newline")
    lines = text[4:].split("\n")
    lines.pop()  # the empty string after the last LF
    return lines


def _parse(payload: bytes, schema: _Schema) -> Any:
    what = schema.what
    keys = schema.keys
    values: dict[str, object] = {}
    extra: dict[str, str] = {}
    for line in _lines(payload, what):
        if line[:1] == "-":
            raise RemoteProtocolError(f"{what} payload has a list item: {_show(line)}")
        key, sep, value = line.partition(": ")
        if not sep:
            raise RemoteProtocolError(f"{what} line has no ': ': {_show(line)}")
        entry = keys.get(key)
        if entry is None:
            if not _UNKNOWN_KEY.fullmatch(key):
                raise RemoteProtocolError(f"{what} line has a malformed key: {_show(line)}")
            if key in extra:
                raise RemoteProtocolError(f"{what} payload repeats key {key!r}")
            extra[key] = value
            continue
        name, convert = entry
        if name in values:
            raise RemoteProtocolError(f"{what} payload repeats key {key!r}")
        try:
            values[name] = convert(value)
        except ValueError as exc:
            raise RemoteProtocolError(f"{what} key {key!r}: {exc}: {_show(line)}") from None
    for name in schema.required:
        values.setdefault(name, None)  # a key every known version sends, omitted
    return schema.cls(**values, extra=MappingProxyType(extra))


def parse_server_stats(payload: bytes) -> ServerStats:
    """Parse the payload of ``OK <n>`` after ``stats`` (the n bytes, without CRLF)."""
    stats: ServerStats = _parse(payload, _SERVER)
    return stats


def parse_job_stats(payload: bytes, job_id: int | None = None) -> JobStats:
    """Parse the payload of ``OK <n>`` after ``stats-job`` (the n bytes, without CRLF).

    With ``job_id``, the payload must describe that job (unless it omits ``id``).
    """
    stats: JobStats = _parse(payload, _JOB)
    # The check is here, not in the (possibly compiled) reply table, because an omitted
    # id is None whatever the annotation says, which compiled code would refuse to read.
    if job_id is not None and stats.id is not None and stats.id != job_id:
        raise RemoteProtocolError(f"'stats-job {job_id}' was answered for job {stats.id}")
    return stats


def parse_tube_stats(payload: bytes) -> TubeStats:
    """Parse the payload of ``OK <n>`` after ``stats-tube`` (the n bytes, without CRLF)."""
    stats: TubeStats = _parse(payload, _TUBE)
    return stats


def parse_tube_list(payload: bytes) -> tuple[str, ...]:
    """Parse the payload of ``OK <n>`` after ``list-tubes`` or ``list-tubes-watched``.

    Items come back in wire order (which means nothing: the server's set is unordered),
    as sent: beanstalkd never quotes them, so ``1.0`` or ``null`` are names, and they are
    not validated here.
    """
    items = []
    for line in _lines(payload, "tube list"):
        if line[:2] != "- " or len(line) == 2:
            raise RemoteProtocolError(f"tube list line is not '- <name>': {_show(line)}")
        items.append(line[2:])
    return tuple(items)
