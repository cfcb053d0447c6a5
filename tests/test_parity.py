"""The blocking and the anyio client have the same methods with the same signatures."""

from __future__ import annotations

import inspect

import beanproto_anyio
import beanproto_sync

# Lifetime differs by design: close()/__enter__ versus aclose()/__aenter__.
_LIFETIME = {"close", "aclose"}


def _public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member) and name not in _LIFETIME
    }


def test_same_public_methods() -> None:
    sync = _public_methods(beanproto_sync.Client)
    anyio_ = _public_methods(beanproto_anyio.Client)
    assert sorted(sync) == sorted(anyio_)
    assert len(sync) == 26  # every method of SPEC.md but close(), and pipeline()


def test_same_signatures() -> None:
    sync = _public_methods(beanproto_sync.Client)
    anyio_ = _public_methods(beanproto_anyio.Client)
    for name, method in sync.items():
        other = anyio_[name]
        assert inspect.signature(method) == inspect.signature(other), name  # type: ignore[arg-type]
        assert inspect.iscoroutinefunction(other), name
        assert not inspect.iscoroutinefunction(method), name


def test_lifetime_counterparts() -> None:
    assert inspect.iscoroutinefunction(beanproto_anyio.Client.aclose)
    assert inspect.iscoroutinefunction(beanproto_anyio.Client.__aenter__)
    assert isinstance(beanproto_anyio.Client.closed, property)
    assert isinstance(beanproto_sync.Client.closed, property)


def test_same_construction_keywords() -> None:
    sync = inspect.signature(beanproto_sync.Client.__init__).parameters
    client = inspect.signature(beanproto_anyio.Client.__init__).parameters
    connect = inspect.signature(beanproto_anyio.connect).parameters
    for name in ("encoding", "serializer", "use", "watch", "max_body_size"):
        assert sync[name] == client[name] == connect[name]
    for name in ("address", "tls", "ssl_context", "reconnect"):
        assert sync[name] == connect[name], name
    # A client over a stream it was given cannot open another.
    assert "reconnect" not in client


def test_same_exports() -> None:
    shared = set(beanproto_sync.__all__) - {"ConcurrentUseError"}
    assert shared <= set(beanproto_anyio.__all__)


def _worker_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


def test_workers_are_twins() -> None:
    sync = _worker_methods(beanproto_sync.Worker)
    anyio_ = _worker_methods(beanproto_anyio.Worker)
    assert sorted(sync) == sorted(anyio_)
    assert {"handler", "add_handler", "run", "stop", "tubes", "options"} <= set(sync)
    for name, member in sync.items():
        other = anyio_[name]
        if isinstance(member, property):
            assert isinstance(other, property), name
            continue
        assert inspect.signature(member) == inspect.signature(other), name  # type: ignore[arg-type]
        # Only run() awaits: stop() is called from signal handlers, callbacks and other tasks.
        assert inspect.iscoroutinefunction(other) == (name == "run"), name
        assert not inspect.iscoroutinefunction(member), name


def test_worker_construction_keywords() -> None:
    sync = inspect.signature(beanproto_sync.Worker.__init__).parameters
    anyio_ = inspect.signature(beanproto_anyio.Worker.__init__).parameters
    for name in (
        "address",
        "concurrency",
        "max_attempts",
        "retry_delay",
        "grace",
        "encoding",
        "serializer",
    ):
        assert sync[name] == anyio_[name], name
    assert "timeout" in sync  # the blocking worker's socket timeout
