"""beanproto.address: every way of writing an address, one reading (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from beanproto.address import AddressError, describe, parse_address, resolve_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (("h", 1), ("h", 1)),
        (["h", 2], ("h", 2)),
        (Path("/run/b.sock"), "/run/b.sock"),
        ("/run/b.sock", "/run/b.sock"),
        ("./b.sock", "./b.sock"),
        ("localhost", ("localhost", 11300)),
        ("h:3", ("h", 3)),
        ("beanstalk://h", ("h", 11300)),
        ("beanstalkd://h:4", ("h", 4)),
        ("unix:///run/b.sock", "/run/b.sock"),
        ("[::1]:5", ("::1", 5)),
    ],
)
def test_resolve(address: object, expected: object) -> None:
    assert resolve_address(address) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [("h",), ("h", 1, 2), ("", 1), (1, 1), ("h", "1"), ("h", True), ("h", 0), ("h", 65536)],
)
def test_bad_pairs(address: object) -> None:
    with pytest.raises(AddressError, match=r"host|port"):
        resolve_address(address)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", [b"h:1", 11300, 1.5, {"h": 1}])
def test_not_an_address(address: object) -> None:
    with pytest.raises(TypeError, match="address must be"):
        resolve_address(address)  # type: ignore[arg-type]


def test_empty_path() -> None:
    class Empty:
        def __fspath__(self) -> str:
            return ""

    with pytest.raises(AddressError, match="non-empty"):
        resolve_address(Empty())  # type: ignore[arg-type]


def test_a_bad_string_is_named() -> None:
    with pytest.raises(ValueError, match="'http://x'"):
        resolve_address("http://x")
    with pytest.raises(AddressError, match="not a list"):
        parse_address("h1:11300,h2:11300")


def test_none_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEANSTALKD_URL", raising=False)
    assert resolve_address() == ("127.0.0.1", 11300)
    monkeypatch.setenv("BEANSTALKD_URL", "")
    assert resolve_address(None) == ("127.0.0.1", 11300)
    monkeypatch.setenv("BEANSTALKD_URL", "beanstalk://q.example:11400")
    assert resolve_address(None) == ("q.example", 11400)
    monkeypatch.setenv("BEANSTALKD_URL", "ftp://q")
    with pytest.raises(AddressError, match=r"invalid \$BEANSTALKD_URL: 'ftp://q'"):
        resolve_address(None)
    # Given explicitly, an address wins over the environment.
    assert resolve_address("h:1") == ("h", 1)


def test_describe() -> None:
    assert describe(("h", 1)) == "h:1"
    assert describe(("::1", 1)) == "[::1]:1"
    assert describe("/s") == "unix:/s"
