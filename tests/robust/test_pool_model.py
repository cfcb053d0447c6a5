"""Model-based testing of ``beanproto_sync.Pool`` over two real beanstalkd servers
that are killed (SIGKILL) and restarted at random: no job is lost, none doubled.

Both servers keep a binlog (``-b``), so a killed and restarted server still has
its jobs, and the invariant is exact: every body whose ``put`` returned is
reserved exactly once in the end (during the run, or by the final drain); a
body whose put raised :class:`beanproto.BrokenConnectionError` as "of unknown
fate" is reserved at most once; a put that raised "every server is down" was
sent nowhere, so its body never appears. Each reserve deletes its job in the
same rule, so no job is held when a server dies.

The servers live for the module (restarted when an example begins with one
down); each example uses a fresh tube. The example count is small: every
example starts and kills processes.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import beanproto as bp
from beanproto_sync import Pool
from conftest import Server, drain_bodies, new_tube_name, restart_server, start_server

_servers: list[Server] = []
_binlogs: list[str] = []
server_ix = st.integers(0, 1)


@pytest.fixture(scope="module", autouse=True)
def _resources() -> Iterator[None]:
    for _ in range(2):
        folder = tempfile.mkdtemp(prefix="bp-binlog-")
        _binlogs.append(folder)
        _servers.append(start_server("-b", folder))
    yield
    for srv in _servers:
        srv.stop()
    for folder in _binlogs:
        shutil.rmtree(folder, ignore_errors=True)
    _servers.clear()
    _binlogs.clear()


def _running(i: int) -> bool:
    return _servers[i].process.poll() is None


def _revive(i: int) -> None:
    if not _running(i):
        old = _servers[i]
        old.stop()  # it is dead: this closes its log
        _servers[i] = restart_server(old)


class PoolModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        for i in range(2):
            _revive(i)
        self.tube = new_tube_name()
        self.pool = Pool([s.address for s in _servers], use=self.tube, watch=self.tube, timeout=5)
        self.names = [s.name for s in _servers]
        self.bodies = (b"body-%d" % i for i in itertools.count())
        self.returned: dict[bytes, str] = {}  # body -> the server its put named
        self.unknown: set[bytes] = set()  # a put that raised: maybe inserted
        self.unsent: set[bytes] = set()  # every server was down: not inserted
        self.reserved: list[bytes] = []

    @rule(key=st.one_of(st.none(), st.sampled_from(["a", "b", "c"])))
    def put(self, key: str | None) -> None:
        body = next(self.bodies)
        try:
            ref = self.pool.put(body, ttr=60, key=key)
        except bp.BrokenConnectionError as exc:
            if "may or may not" in str(exc):
                self.unknown.add(body)
            else:
                self.unsent.add(body)  # the server is down, or every one is
            return
        assert ref.server in self.names
        self.returned[body] = ref.server

    @rule()
    def reserve_and_delete(self) -> None:
        try:
            job = self.pool.reserve(timeout=0)
        except (bp.TimedOutError, bp.BrokenConnectionError):
            return
        assert job.server in self.names
        self.reserved.append(job.body)
        self.pool.delete(job)  # the server cannot die within a rule

    @precondition(lambda self: _running(0) or _running(1))
    @rule(i=server_ix)
    def kill(self, i: int) -> None:
        if _running(i):
            _servers[i].kill()

    @rule(i=server_ix)
    def restart(self, i: int) -> None:
        _revive(i)

    @invariant()
    def nothing_twice(self) -> None:
        assert len(self.reserved) == len(set(self.reserved))
        assert not set(self.reserved) & self.unsent
        assert set(self.reserved) <= set(self.returned) | self.unknown

    def teardown(self) -> None:
        self.pool.close()
        for i in range(2):
            _revive(i)
        rest = [body for srv in _servers for body in drain_bodies(srv, self.tube)]
        seen = self.reserved + rest
        assert len(seen) == len(set(seen)), "a job was doubled"
        assert set(self.returned) <= set(seen), "a job whose put returned was lost"
        assert set(seen) <= set(self.returned) | self.unknown
        assert not set(seen) & self.unsent


PoolModel.TestCase.settings = settings(
    settings.default, max_examples=40, stateful_step_count=30, deadline=None
)
test_pool_model = PoolModel.TestCase
