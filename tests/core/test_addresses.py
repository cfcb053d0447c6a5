"""beanproto.address: every way of writing an address, one reading (no server needed)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import beanproto.address
from beanproto.address import (
    AddressError,
    describe,
    parse_address,
    parse_addresses,
    resolve_address,
    resolve_addresses,
)


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


@pytest.mark.parametrize(
    "text", ["h1:11300,h2", "beanstalk://h1,beanstalk://h2", "unix:///a,unix:///b", "/a,b"]
)
def test_one_address_refuses_a_list(text: str) -> None:
    several = r"not a list: a client connects to one server \(a Pool or a Worker takes several"
    with pytest.raises(AddressError, match=several):
        resolve_address(text)
    with pytest.raises(AddressError, match=several):
        resolve_address(text.split(","))  # type: ignore[arg-type]


def test_a_pair_with_a_port_in_a_str_is_no_list() -> None:
    with pytest.raises(AddressError, match="the port must be an int from 1 to 65535"):
        resolve_address(("h", "11300"))  # type: ignore[arg-type]
    # Nor is it two servers, "h" and "11300", where several addresses are read.
    with pytest.raises(AddressError, match="the port must be an int from 1 to 65535"):
        resolve_addresses(("h", "11300"))  # type: ignore[arg-type]
    with pytest.raises(AddressError, match="not a list"):
        resolve_address([("h1", 1), ("h2", 2)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h1", [("h1", 11300)]),
        ("beanstalk://h1:11300,h2:11300", [("h1", 11300), ("h2", 11300)]),
        ("beanstalkd://h1:1,beanstalk://h2", [("h1", 1), ("h2", 11300)]),
        ("h1:11300,h2", [("h1", 11300), ("h2", 11300)]),
        (" h1 , h2:2 ", [("h1", 11300), ("h2", 2)]),
        ("unix:///a,unix:///b", ["/a", "/b"]),
        ("unix:/a, ./b, [::1]:3", ["/a", "./b", ("::1", 3)]),
        ("h2,h1", [("h2", 11300), ("h1", 11300)]),  # the order given
    ],
)
def test_parse_addresses(text: str, expected: list[object]) -> None:
    assert parse_addresses(text) == expected
    assert resolve_addresses(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'': an empty address"),
        ("  ", "'  ': an empty address"),
        ("h1,", "'h1,': an empty item in the list"),
        (",h1", "',h1': an empty item in the list"),
        ("h1,,h2", "'h1,,h2': an empty item in the list"),
        ("h1, ,h2", "'h1, ,h2': an empty item in the list"),
        ("h1,ftp://h2", "'h1,ftp://h2': 'ftp://h2': unknown scheme 'ftp'"),
        ("h1,h2:0", "'h1,h2:0': 'h2:0': port must be"),
        ("ftp://h2", "'ftp://h2': unknown scheme"),
        ("h1,h1", "'h1,h1': h1:11300 is given twice"),
        ("h1,beanstalk://h1:11300", "'h1,beanstalk://h1:11300': h1:11300 is given twice"),
        ("unix:/a,/a", "'unix:/a,/a': unix:/a is given twice"),
    ],
)
def test_bad_address_lists(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=f"^{message}"):
        parse_addresses(text)


def test_resolve_addresses_takes_python_lists() -> None:
    assert resolve_addresses([("h1", 1), ["h2", 2], "h3:3", Path("/s")]) == [
        ("h1", 1),
        ("h2", 2),
        ("h3", 3),
        "/s",
    ]
    assert resolve_addresses(("h1:1", "h2:2")) == [("h1", 1), ("h2", 2)]
    assert resolve_addresses(["h1", "h2"]) == [("h1", 11300), ("h2", 11300)]
    assert resolve_addresses(a for a in ["h1"]) == [("h1", 11300)]
    # One address, not in a list:
    assert resolve_addresses(("h1", 1)) == [("h1", 1)]
    assert resolve_addresses(["h1", 2]) == [("h1", 2)]
    assert resolve_addresses(Path("/s")) == ["/s"]


def test_bad_python_lists() -> None:
    with pytest.raises(AddressError, match="no address in an empty list"):
        resolve_addresses([])
    with pytest.raises(AddressError, match=r"^\[\('h1', 1\), 'h1:1'\]: h1:1 is given twice"):
        resolve_addresses([("h1", 1), "h1:1"])
    with pytest.raises(AddressError, match="not a list"):
        resolve_addresses(["h1,h2"])  # a list of lists is no address
    with pytest.raises(AddressError, match="port must be"):
        resolve_addresses(("h1", True))
    with pytest.raises(TypeError, match="addresses must be"):
        resolve_addresses(11300)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="addresses must be"):
        resolve_addresses(b"h1,h2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address must be"):
        resolve_addresses([b"h1"])  # type: ignore[list-item]


def test_addresses_none_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEANSTALKD_URL", raising=False)
    assert resolve_addresses() == [("127.0.0.1", 11300)]
    monkeypatch.setenv("BEANSTALKD_URL", "")
    assert resolve_addresses(None) == [("127.0.0.1", 11300)]
    monkeypatch.setenv("BEANSTALKD_URL", "beanstalk://q1:1,beanstalk://q2:2")
    assert resolve_addresses(None) == [("q1", 1), ("q2", 2)]
    with pytest.raises(AddressError, match=r"invalid \$BEANSTALKD_URL: .*resolve_addresses"):
        resolve_address(None)  # one address wanted, a list given
    monkeypatch.setenv("BEANSTALKD_URL", "q1,,q2")
    with pytest.raises(AddressError, match=r"invalid \$BEANSTALKD_URL: 'q1,,q2': an empty item"):
        resolve_addresses(None)
    assert resolve_addresses("h:1") == [("h", 1)]


def test_the_docstring_examples() -> None:
    result = doctest.testmod(beanproto.address)
    assert result.attempted >= 10 and result.failed == 0


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
