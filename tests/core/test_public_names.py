"""The public names carry their public path (``beanproto.Job``, not ``beanproto._job.Job``),
and the exceptions survive a pickle round trip under it."""

from __future__ import annotations

import copy
import pickle
from types import FunctionType, ModuleType

import pytest

import beanproto
import beanproto.worker
import beanproto_anyio
import beanproto_sync


@pytest.mark.parametrize("package", [beanproto, beanproto_sync, beanproto_anyio])
def test_public_names_carry_the_package_path(package: ModuleType) -> None:
    for name in package.__all__:
        obj = getattr(package, name)
        if not isinstance(obj, (type, FunctionType)):
            continue
        # Defined by the package itself, or re-exported from a public module.
        assert obj.__module__ in {package.__name__, "beanproto", "beanproto.worker"}, name
        assert "._" not in obj.__module__, name
        assert getattr(__import__(obj.__module__, fromlist=["_"]), obj.__qualname__) is obj


def test_names_defined_elsewhere_keep_their_module() -> None:
    assert beanproto_sync.Job.__module__ == "beanproto"
    assert beanproto_anyio.NotFoundError.__module__ == "beanproto"
    assert beanproto_sync.RetryJob.__module__ == "beanproto.worker"
    assert beanproto_sync.Client.__module__ == "beanproto_sync"
    assert beanproto_anyio.connect.__module__ == "beanproto_anyio"
    assert repr(beanproto.Job) == "<class 'beanproto.Job'>"


def test_broken_connection_error_is_a_connection_error() -> None:
    assert issubclass(beanproto.BrokenConnectionError, beanproto.Error)
    assert issubclass(beanproto.BrokenConnectionError, ConnectionError)
    exc = beanproto.BrokenConnectionError("the server closed the connection")
    assert str(exc) == "the server closed the connection"
    assert exc.errno is None


def _round_trips(exc: BaseException) -> BaseException:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert back.args == exc.args
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)
    assert vars(copy.copy(exc)) == vars(exc)
    return back


def test_exceptions_pickle() -> None:
    refusal = beanproto.NotFoundError("NOT_FOUND")
    refusal.outcomes = [1, 2]
    back = _round_trips(refusal)
    assert isinstance(back, beanproto.NotFoundError)
    assert back.outcomes == [1, 2]
    _round_trips(beanproto.BrokenConnectionError("the connection is unusable: timed out"))
    _round_trips(beanproto.RemoteProtocolError("bad reply"))
    _round_trips(beanproto.InvalidArgument("tube name too long"))


@pytest.mark.parametrize("id", [7, None])
def test_buried_error_pickles_with_its_id(id: int | None) -> None:
    back = _round_trips(beanproto.BuriedError(id))
    assert isinstance(back, beanproto.BuriedError)
    assert back.id == id


def test_body_decode_error_pickles_with_its_job() -> None:
    back = _round_trips(beanproto.BodyDecodeError(3, b"\xff", "utf-8"))
    assert isinstance(back, beanproto.BodyDecodeError)
    assert (back.id, back.body, back.encoding) == (3, b"\xff", "utf-8")
