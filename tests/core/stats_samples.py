"""Fixed stats payloads in the shapes beanstalkd 1.10-1.13 send, with their expected values.

The shapes follow protocol-notes §7/§8 and a live 1.12 capture: ``---\\n`` then LF-only
lines; 1.10 leaves ``version`` unquoted, 1.11+ quotes it, 1.12 adds ``draining``/``os``/
``platform`` unquoted, 1.13 quotes ``hostname``/``os``/``platform``/``name``/``tube``.
Every counter has a different value so that a key mapped to the wrong attribute shows up.
The key tables (wire key -> kind) are written out from the notes, independently of the
parser's own table, so the tests check that table rather than mirror it.
"""

from __future__ import annotations

from typing import Any

# Kinds: "u" unsigned int, "i" int that may be negative, "f" rusage seconds, "b" bool,
# "s" string that some version may quote, "id" the server id (a string, never quoted).
SERVER_KEYS: dict[str, str] = {
    "current-jobs-urgent": "u",
    "current-jobs-ready": "u",
    "current-jobs-reserved": "u",
    "current-jobs-delayed": "u",
    "current-jobs-buried": "u",
    "cmd-put": "u",
    "cmd-peek": "u",
    "cmd-peek-ready": "u",
    "cmd-peek-delayed": "u",
    "cmd-peek-buried": "u",
    "cmd-reserve": "u",
    "cmd-reserve-with-timeout": "u",
    "cmd-delete": "u",
    "cmd-release": "u",
    "cmd-use": "u",
    "cmd-watch": "u",
    "cmd-ignore": "u",
    "cmd-bury": "u",
    "cmd-kick": "u",
    "cmd-touch": "u",
    "cmd-stats": "u",
    "cmd-stats-job": "u",
    "cmd-stats-tube": "u",
    "cmd-list-tubes": "u",
    "cmd-list-tube-used": "u",
    "cmd-list-tubes-watched": "u",
    "cmd-pause-tube": "u",
    "job-timeouts": "u",
    "total-jobs": "u",
    "max-job-size": "u",
    "current-tubes": "u",
    "current-connections": "u",
    "current-producers": "u",
    "current-workers": "u",
    "current-waiting": "u",
    "total-connections": "u",
    "pid": "u",
    "version": "s",
    "rusage-utime": "f",
    "rusage-stime": "f",
    "uptime": "u",
    "binlog-oldest-index": "u",
    "binlog-current-index": "u",
    "binlog-records-migrated": "u",
    "binlog-records-written": "u",
    "binlog-max-size": "u",
    "draining": "b",
    "id": "id",
    "hostname": "s",
    "os": "s",
    "platform": "s",
}
SERVER_KEYS_SINCE_1_12 = frozenset({"draining", "os", "platform"})

JOB_KEYS: dict[str, str] = {
    "id": "u",
    "tube": "s",
    "state": "s",
    "pri": "u",
    "age": "u",
    "delay": "u",
    "ttr": "u",
    "time-left": "i",
    "file": "u",
    "reserves": "u",
    "timeouts": "u",
    "releases": "u",
    "buries": "u",
    "kicks": "u",
}

TUBE_KEYS: dict[str, str] = {
    "name": "s",
    "current-jobs-urgent": "u",
    "current-jobs-ready": "u",
    "current-jobs-reserved": "u",
    "current-jobs-delayed": "u",
    "current-jobs-buried": "u",
    "total-jobs": "u",
    "current-using": "u",
    "current-watching": "u",
    "current-waiting": "u",
    "cmd-delete": "u",
    "cmd-pause-tube": "u",
    "pause": "u",
    "pause-time-left": "i",
}


def attr(key: str) -> str:
    return key.replace("-", "_")


# --- stats ---------------------------------------------------------------------------------

# The 36 counters from current-jobs-urgent to total-connections, as on the wire.
_COUNTER_LINES = """\
current-jobs-urgent: 1
current-jobs-ready: 2
current-jobs-reserved: 3
current-jobs-delayed: 4
current-jobs-buried: 5
cmd-put: 6
cmd-peek: 7
cmd-peek-ready: 8
cmd-peek-delayed: 9
cmd-peek-buried: 10
cmd-reserve: 11
cmd-reserve-with-timeout: 12
cmd-delete: 13
cmd-release: 14
cmd-use: 15
cmd-watch: 16
cmd-ignore: 17
cmd-bury: 18
cmd-kick: 19
cmd-touch: 20
cmd-stats: 21
cmd-stats-job: 22
cmd-stats-tube: 23
cmd-list-tubes: 24
cmd-list-tube-used: 25
cmd-list-tubes-watched: 26
cmd-pause-tube: 27
job-timeouts: 28
total-jobs: 29
max-job-size: 65535
current-tubes: 31
current-connections: 32
current-producers: 33
current-workers: 34
current-waiting: 35
total-connections: 36
"""
COUNTERS: dict[str, int] = {
    attr(k): int(v) for k, v in (line.split(": ") for line in _COUNTER_LINES.splitlines())
}

_BINLOG_LINES = """\
binlog-oldest-index: 41
binlog-current-index: 42
binlog-records-migrated: 43
binlog-records-written: 44
binlog-max-size: 10485760
"""
_BINLOG: dict[str, int] = {
    "binlog_oldest_index": 41,
    "binlog_current_index": 42,
    "binlog_records_migrated": 43,
    "binlog_records_written": 44,
    "binlog_max_size": 10485760,
}

# os values: Linux's uname -v has '#' (a YAML comment to PyYAML), macOS's has ':'.
LINUX_OS = "#1 SMP PREEMPT_DYNAMIC Thu Jan  4 12:34:56 UTC 2024"
MACOS_OS = (
    "Darwin Kernel Version 22.1.0: Sun Oct  9 20:14:54 PDT 2022; "
    "root:xnu-8792.41.9~2/RELEASE_X86_64"
)

STATS_1_10 = (
    "---\n"
    + _COUNTER_LINES
    + "pid: 4242\n"
    + "version: 1.10\n"
    + "rusage-utime: 0.012345\n"
    + "rusage-stime: 1.500000\n"
    + "uptime: 40\n"
    + _BINLOG_LINES
    + "id: 0123456789abcdef\n"
    + "hostname: worker-1\n"
).encode()

STATS_1_11 = STATS_1_10.replace(b"version: 1.10\n", b'version: "1.11"\n')

STATS_1_12 = (
    "---\n"
    + _COUNTER_LINES
    + "pid: 4242\n"
    + 'version: "1.12"\n'
    + "rusage-utime: 0.012345\n"
    + "rusage-stime: 1.500000\n"
    + "uptime: 40\n"
    + _BINLOG_LINES
    + "draining: false\n"
    + "id: 60e4a9b06183338e\n"
    + "hostname: vm\n"
    + f"os: {LINUX_OS}\n"
    + "platform: x86_64\n"
).encode()

STATS_1_13 = (
    "---\n"
    + _COUNTER_LINES
    + "pid: 4242\n"
    + 'version: "1.13"\n'
    + "rusage-utime: 0.012345\n"
    + "rusage-stime: 1.500000\n"
    + "uptime: 40\n"
    + _BINLOG_LINES
    + "draining: true\n"
    + "id: 0000000000000001\n"
    + 'hostname: "build-01.local"\n'
    + f'os: "{MACOS_OS}"\n'
    + 'platform: "arm64"\n'
).encode()

_COMMON: dict[str, Any] = {
    **COUNTERS,
    **_BINLOG,
    "pid": 4242,
    "rusage_utime": 0.012345,
    "rusage_stime": 1.5,
    "uptime": 40,
}

# (payload, expected attribute values); the attributes not listed are absent (None).
SERVER_SAMPLES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "1.10": (
        STATS_1_10,
        {**_COMMON, "version": "1.10", "id": "0123456789abcdef", "hostname": "worker-1"},
    ),
    "1.11": (
        STATS_1_11,
        {**_COMMON, "version": "1.11", "id": "0123456789abcdef", "hostname": "worker-1"},
    ),
    "1.12": (
        STATS_1_12,
        {
            **_COMMON,
            "version": "1.12",
            "draining": False,
            "id": "60e4a9b06183338e",
            "hostname": "vm",
            "os": LINUX_OS,
            "platform": "x86_64",
        },
    ),
    "1.13": (
        STATS_1_13,
        {
            **_COMMON,
            "version": "1.13",
            "draining": True,
            "id": "0000000000000001",
            "hostname": "build-01.local",
            "os": MACOS_OS,
            "platform": "arm64",
        },
    ),
}

# --- stats-job -------------------------------------------------------------------------------

JOB_UNQUOTED = b"""---
id: 18446744073709551615
tube: 1.0
state: reserved
pri: 4294967295
age: 12
delay: 3
ttr: 60
time-left: -1
file: 7
reserves: 2
timeouts: 1
releases: 4
buries: 5
kicks: 6
"""
JOB_QUOTED = JOB_UNQUOTED.replace(b"tube: 1.0\n", b'tube: "1.0"\n')

JOB_EXPECTED: dict[str, Any] = {
    "id": 2**64 - 1,
    "tube": "1.0",
    "state": "reserved",
    "pri": 2**32 - 1,
    "age": 12,
    "delay": 3,
    "ttr": 60,
    "time_left": -1,
    "file": 7,
    "reserves": 2,
    "timeouts": 1,
    "releases": 4,
    "buries": 5,
    "kicks": 6,
}

# --- stats-tube ------------------------------------------------------------------------------

TUBE_UNQUOTED = b"""---
name: null
current-jobs-urgent: 1
current-jobs-ready: 2
current-jobs-reserved: 3
current-jobs-delayed: 4
current-jobs-buried: 5
total-jobs: 6
current-using: 7
current-watching: 8
current-waiting: 9
cmd-delete: 10
cmd-pause-tube: 11
pause: 100
pause-time-left: 99
"""
TUBE_QUOTED = TUBE_UNQUOTED.replace(b"name: null\n", b'name: "null"\n')

TUBE_EXPECTED: dict[str, Any] = {
    "name": "null",
    "current_jobs_urgent": 1,
    "current_jobs_ready": 2,
    "current_jobs_reserved": 3,
    "current_jobs_delayed": 4,
    "current_jobs_buried": 5,
    "total_jobs": 6,
    "current_using": 7,
    "current_watching": 8,
    "current_waiting": 9,
    "cmd_delete": 10,
    "cmd_pause_tube": 11,
    "pause": 100,
    "pause_time_left": 99,
}

# --- list-tubes ------------------------------------------------------------------------------

TUBE_LIST = b"---\n- default\n- 1.0\n- 123\n- null\n- $x\n- .inf\n- +1\n- a-b\n"
TUBE_LIST_EXPECTED = ("default", "1.0", "123", "null", "$x", ".inf", "+1", "a-b")
