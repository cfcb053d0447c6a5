"""Pipelined work for the operator commands: ``bury``, ``dump`` and ``restore``.

Theory of operation: these commands send thousands of commands whose replies they need
one by one (``peek``/``stats-job`` over every job id, ``reserve-with-timeout 0`` then
``bury`` for each job, ``put`` then ``reserve-job``/``bury``). They send them in
batches through :meth:`beanproto_sync.Client.pipeline`, which reads while it writes
and closes the connection on any failure, so the server puts back a job the command
had reserved (``bury`` never loses one). What is here is pure: a job as a JSON Lines
record (:func:`job_record`) and back (:func:`parse_record`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

from beanproto import (
    JobStats,
)

__all__ = ["STATES", "DumpedJob", "RecordError", "job_record", "parse_record"]

#: Job states, in the order beanstalkd's ``stats-job`` names them.
STATES: Final = ("ready", "delayed", "reserved", "buried")


def _body_fields(body: bytes) -> dict[str, str]:
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}


def job_record(stats: JobStats, body: bytes) -> dict[str, Any]:
    """A job as one JSON Lines object of ``dump``.

    ``delay`` is the delay left (``time-left``) of a delayed job, else 0; ``body`` is
    the text when the body is valid UTF-8, else ``body_base64`` holds the bytes.
    """
    return {
        "id": stats.id,
        "tube": stats.tube,
        "state": stats.state,
        "priority": stats.pri,
        "delay": stats.time_left if stats.state == "delayed" else 0,
        "ttr": stats.ttr,
        **_body_fields(body),
    }


class RecordError(ValueError):
    """A line of ``restore``'s input is not a job record."""


@dataclass(frozen=True, slots=True)
class DumpedJob:
    """A job read back from a ``dump`` line."""

    tube: str
    state: str
    priority: int
    delay: int
    ttr: int
    body: bytes


def _integer(record: dict[str, Any], key: str, low: int, default: int | None = None) -> int:
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**32:
        raise RecordError(f"{key!r} must be an integer from {low} to {2**32 - 1}")
    return value


def parse_record(line: str | bytes) -> DumpedJob:
    """Read one ``dump`` line; raises :class:`RecordError` with a short reason."""
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise RecordError(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    tube = record.get("tube")
    if not isinstance(tube, str) or not tube:
        raise RecordError("'tube' must be a tube name")
    state = record.get("state", "ready")
    if state not in STATES:
        raise RecordError(f"'state' must be one of {', '.join(STATES)}")
    if isinstance(record.get("body"), str):
        body = record["body"].encode("utf-8")
    elif isinstance(record.get("body_base64"), str):
        try:
            body = base64.b64decode(record["body_base64"], validate=True)
        except binascii.Error:
            raise RecordError("'body_base64' is not base64") from None
    else:
        raise RecordError("no 'body' (text) or 'body_base64'")
    return DumpedJob(
        tube=tube,
        state=state,
        priority=_integer(record, "priority", 0),
        delay=_integer(record, "delay", 0, 0) if state == "delayed" else 0,
        ttr=_integer(record, "ttr", 1),
        body=body,
    )
