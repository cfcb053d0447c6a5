"""Model-based testing against a real beanstalkd: a hypothesis state machine
drives three clients (the sync client, and the anyio client on asyncio and on
trio, through blocking portals) through random put (priorities, delay 0, ttr >= 10),
reserve(timeout=0), reserve_job, release, bury, kick, kick_job, touch, delete,
use, watch, ignore, peek*, stats_job and stats_tube, keeping a model of every
tube and job (state, priority, owner, counters). Every reply is predicted, and
so is every stats figure the model can know (state, pri, ttr, reserves,
releases, buries, kicks; current-jobs-*, total-jobs, current-using,
current-watching, cmd-delete). Each example uses fresh tube names on a private
server, so nothing else touches what the model describes.

The normal run is bounded by the hypothesis profile (tests/conftest.py);
``HYPOTHESIS_PROFILE=long`` runs 5000 examples.

The TTRs are at least 10 s so that no reservation expires, and no
DEADLINE_SOON comes, within an example (the model has no clock).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from robust_helpers import PortalClient

import beanproto as bp
from beanproto_sync import Client
from conftest import Server, new_tube_name, server_version, start_server

N_CLIENTS = 3
priorities = st.one_of(st.integers(0, 3), st.just(1023), st.just(1024), st.integers(0, bp.MAX_U32))
ttrs = st.one_of(st.integers(10, 100), st.integers(10, bp.MAX_U32))
client_ix = st.integers(0, N_CLIENTS - 1)
picks = st.integers(0, 2**16)
BOGUS_ID = 2**63


@dataclass
class MJob:
    id: int
    tube: str
    body: bytes
    pri: int
    ttr: int
    state: str = "ready"  # ready | reserved | buried
    owner: int | None = None
    buried_at: int = 0  # order of burial: kick and peek-buried take the oldest
    reserves: int = 0
    releases: int = 0
    buries: int = 0
    kicks: int = 0


@dataclass
class MTube:
    total_jobs: int = 0
    cmd_delete: int = 0


@dataclass
class MClient:
    client: Any  # a beanproto_sync.Client or a PortalClient: the same methods
    used: str
    watched: list[str] = field(default_factory=list)


_server: Server | None = None
_portals: dict[str, Any] = {}


def server() -> Server:
    global _server
    if _server is None:
        _server = start_server()
    return _server


@pytest.fixture(scope="module", autouse=True)
def _resources() -> Iterator[None]:
    global _server
    with ExitStack() as stack:
        for backend in ("asyncio", "trio"):
            _portals[backend] = stack.enter_context(start_blocking_portal(backend))
        yield
        _portals.clear()
    if _server is not None:
        _server.stop()
        _server = None


def core_of(client: Any) -> Any:
    """The beanproto.Connection under a sync client or a PortalClient."""
    inner = getattr(client, "aclient", client)
    return (inner._mux if hasattr(inner, "_mux") else inner._transport)._conn


def connect(kind: str, tube: str) -> Any:
    if kind == "sync":
        return Client(server().address, use=tube, watch=tube, timeout=5)
    return PortalClient(_portals[kind], server().address, use=tube, watch=tube)


class BeanstalkdModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        base = new_tube_name()
        self.tube_names = [f"{base}-{c}" for c in "abc"]
        first = self.tube_names[0]
        self.clients = [
            MClient(connect(kind, first), first, [first]) for kind in ("sync", "asyncio", "trio")
        ]
        self.jobs: dict[int, MJob] = {}
        self.deleted: set[int] = set()
        self.tubes: dict[str, MTube] = {first: MTube()}
        self.last_id = 0
        self.burials = itertools.count(1)

    def teardown(self) -> None:
        for c in self.clients:
            c.client.close()

    # -- the model's helpers -------------------------------------------------------

    def tube_alive(self, tube: str) -> bool:
        return (
            any(j.tube == tube for j in self.jobs.values())
            or any(c.used == tube for c in self.clients)
            or any(tube in c.watched for c in self.clients)
        )

    def touch_tube(self, tube: str) -> None:
        """``use``/``watch`` creates the tube (with fresh counters) if it is gone."""
        if tube not in self.tubes:
            self.tubes[tube] = MTube()

    def reap(self) -> None:
        """The server frees a tube nothing refers to, counters and all."""
        for tube in list(self.tubes):
            if not self.tube_alive(tube):
                del self.tubes[tube]

    def pick(self, n: int) -> int:
        ids = sorted(self.jobs) + sorted(self.deleted)
        if not ids or n % 11 == 0:
            return BOGUS_ID
        return ids[n % len(ids)]

    def next_ready(self, tubes: list[str]) -> MJob | None:
        ready = [j for j in self.jobs.values() if j.state == "ready" and j.tube in tubes]
        return min(ready, key=lambda j: (j.pri, j.id), default=None)

    def oldest_buried(self, tube: str) -> MJob | None:
        buried = [j for j in self.jobs.values() if j.state == "buried" and j.tube == tube]
        return min(buried, key=lambda j: j.buried_at, default=None)

    def check_job(self, job: bp.Job[bytes], expected: MJob) -> None:
        assert job == bp.Job(expected.id, expected.body)

    # -- producing -----------------------------------------------------------------

    @rule(c=client_ix, body=st.binary(max_size=30), pri=priorities, ttr=ttrs)
    def put(self, c: int, body: bytes, pri: int, ttr: int) -> None:
        mc = self.clients[c]
        job_id = mc.client.put(body, priority=pri, ttr=ttr)
        assert job_id > self.last_id
        self.last_id = job_id
        self.jobs[job_id] = MJob(job_id, mc.used, body, pri, ttr)
        self.tubes[mc.used].total_jobs += 1

    @rule(c=client_ix, t=st.integers(0, 2))
    def use(self, c: int, t: int) -> None:
        tube = self.tube_names[t]
        assert self.clients[c].client.use(tube) == tube
        self.touch_tube(tube)
        self.clients[c].used = tube
        self.reap()

    # -- consuming -----------------------------------------------------------------

    @rule(c=client_ix)
    def reserve(self, c: int) -> None:
        mc = self.clients[c]
        expected = self.next_ready(mc.watched)
        if expected is None:
            with pytest.raises(bp.TimedOutError):
                mc.client.reserve(timeout=0)
            return
        self.check_job(mc.client.reserve(timeout=0), expected)
        expected.state, expected.owner = "reserved", c
        expected.reserves += 1

    @rule(c=client_ix, n=picks)
    def reserve_job(self, c: int, n: int) -> None:
        job_id = self.pick(n)
        if server_version() < (1, 12):
            # reserve-job is new in 1.12: older servers refuse it, and nothing changes.
            with pytest.raises(bp.BadFormatError):
                self.clients[c].client.reserve_job(job_id)
            return
        job = self.jobs.get(job_id)
        if job is None or job.state == "reserved":
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.reserve_job(job_id)
            return
        self.check_job(self.clients[c].client.reserve_job(job_id), job)
        job.state, job.owner = "reserved", c
        job.reserves += 1

    def owned(self, c: int, job_id: int) -> MJob | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.state == "reserved" and job.owner == c else None

    @rule(c=client_ix, n=picks, pri=priorities)
    def release(self, c: int, n: int, pri: int) -> None:
        job_id = self.pick(n)
        job = self.owned(c, job_id)
        if job is None:
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.release(job_id, priority=pri)
            return
        self.clients[c].client.release(job_id, priority=pri)
        job.state, job.owner, job.pri = "ready", None, pri
        job.releases += 1

    @rule(c=client_ix, n=picks, pri=priorities)
    def bury(self, c: int, n: int, pri: int) -> None:
        job_id = self.pick(n)
        job = self.owned(c, job_id)
        if job is None:
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.bury(job_id, priority=pri)
            return
        self.clients[c].client.bury(job_id, priority=pri)
        job.state, job.owner, job.pri = "buried", None, pri
        job.buried_at = next(self.burials)
        job.buries += 1

    @rule(c=client_ix, n=picks)
    def touch(self, c: int, n: int) -> None:
        job_id = self.pick(n)
        if self.owned(c, job_id) is None:
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.touch(job_id)
            return
        self.clients[c].client.touch(job_id)

    @rule(c=client_ix, n=picks)
    def delete(self, c: int, n: int) -> None:
        job_id = self.pick(n)
        job = self.jobs.get(job_id)
        if job is None or (job.state == "reserved" and job.owner != c):
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.delete(job_id)
            return
        self.clients[c].client.delete(job_id)
        del self.jobs[job_id]
        self.deleted.add(job_id)
        self.tubes[job.tube].cmd_delete += 1
        self.reap()

    @rule(c=client_ix, bound=st.integers(0, 4))
    def kick(self, c: int, bound: int) -> None:
        tube = self.clients[c].used
        kicked = []
        while len(kicked) < bound and (job := self.oldest_buried(tube)) is not None:
            job.state = "ready"
            job.kicks += 1
            kicked.append(job)
        assert self.clients[c].client.kick(bound) == len(kicked)

    @rule(c=client_ix, n=picks)
    def kick_job(self, c: int, n: int) -> None:
        job_id = self.pick(n)
        job = self.jobs.get(job_id)
        if job is None or job.state != "buried":
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.kick_job(job_id)
            return
        self.clients[c].client.kick_job(job_id)
        job.state = "ready"
        job.kicks += 1

    @rule(c=client_ix, t=st.integers(0, 2))
    def watch(self, c: int, t: int) -> None:
        mc = self.clients[c]
        tube = self.tube_names[t]
        if tube not in mc.watched:
            mc.watched.append(tube)
        self.touch_tube(tube)
        assert mc.client.watch(tube) == len(mc.watched)

    @rule(c=client_ix, t=st.integers(0, 2))
    def ignore(self, c: int, t: int) -> None:
        mc = self.clients[c]
        tube = self.tube_names[t]
        if mc.watched == [tube]:
            with pytest.raises(bp.NotIgnoredError):
                mc.client.ignore(tube)
            return
        if tube in mc.watched:
            mc.watched.remove(tube)
        assert mc.client.ignore(tube) == len(mc.watched)
        self.reap()

    # -- inspecting ----------------------------------------------------------------

    @rule(c=client_ix, n=picks)
    def peek(self, c: int, n: int) -> None:
        job_id = self.pick(n)
        job = self.jobs.get(job_id)
        if job is None:
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.peek(job_id)
            return
        self.check_job(self.clients[c].client.peek(job_id), job)

    @rule(c=client_ix, kind=st.sampled_from(["ready", "buried", "delayed"]))
    def peek_state(self, c: int, kind: str) -> None:
        mc = self.clients[c]
        if kind == "ready":
            expected = self.next_ready([mc.used])
        elif kind == "buried":
            expected = self.oldest_buried(mc.used)
        else:
            expected = None  # every delay is 0
        call = getattr(mc.client, f"peek_{kind}")
        if expected is None:
            with pytest.raises(bp.NotFoundError):
                call()
            return
        self.check_job(call(), expected)

    @rule(c=client_ix, n=picks)
    def stats_job(self, c: int, n: int) -> None:
        job_id = self.pick(n)
        job = self.jobs.get(job_id)
        if job is None:
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.stats_job(job_id)
            return
        s = self.clients[c].client.stats_job(job_id)
        got = (s.id, s.tube, s.state, s.pri, s.ttr, s.delay, s.timeouts)
        assert got == (job.id, job.tube, job.state, job.pri, job.ttr, 0, 0)
        assert (s.reserves, s.releases, s.buries, s.kicks) == (
            job.reserves,
            job.releases,
            job.buries,
            job.kicks,
        )

    @rule(c=client_ix, t=st.integers(0, 2))
    def stats_tube(self, c: int, t: int) -> None:
        tube = self.tube_names[t]
        if tube not in self.tubes:
            with pytest.raises(bp.NotFoundError):
                self.clients[c].client.stats_tube(tube)
            return
        s = self.clients[c].client.stats_tube(tube)
        jobs = [j for j in self.jobs.values() if j.tube == tube]

        def count(state: str) -> int:
            return sum(j.state == state for j in jobs)

        expected = {
            "name": tube,
            "current_jobs_urgent": sum(j.state == "ready" and j.pri < 1024 for j in jobs),
            "current_jobs_ready": count("ready"),
            "current_jobs_reserved": count("reserved"),
            "current_jobs_delayed": 0,
            "current_jobs_buried": count("buried"),
            "total_jobs": self.tubes[tube].total_jobs,
            "current_using": sum(mc.used == tube for mc in self.clients),
            "current_watching": sum(tube in mc.watched for mc in self.clients),
            "cmd_delete": self.tubes[tube].cmd_delete,
            "pause": 0,
        }
        assert {k: getattr(s, k) for k in expected} == expected

    @rule(c=client_ix)
    def tubes(self, c: int) -> None:
        """Tubes come and go as the model says (created by use/watch, freed when
        nothing refers to them)."""
        existing = set(self.clients[c].client.tubes()) & set(self.tube_names)
        assert existing == set(self.tubes)

    @precondition(lambda self: True)
    @invariant()
    def connection_knows_its_tubes(self) -> None:
        for mc in self.clients:
            conn = core_of(mc.client)
            assert conn.used_tube == mc.used
            assert sorted(conn.watched_tubes) == sorted(mc.watched)


BeanstalkdModel.TestCase.settings = settings(
    settings.default, stateful_step_count=40, deadline=None
)
test_model = BeanstalkdModel.TestCase
