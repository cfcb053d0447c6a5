"""Address parsing for --address and BEANSTALKD_URL (no server needed)."""

from __future__ import annotations

import pytest

from beanproto_cli import AddressError, describe, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:11300", ("127.0.0.1", 11300)),
        ("localhost", ("localhost", 11300)),
        ("queue.example.com:1", ("queue.example.com", 1)),
        ("[::1]:11301", ("::1", 11301)),
        ("[::1]", ("::1", 11300)),
        ("beanstalk://10.0.0.5:11400", ("10.0.0.5", 11400)),
        ("beanstalk://10.0.0.5", ("10.0.0.5", 11300)),
        ("beanstalk://10.0.0.5:11400/", ("10.0.0.5", 11400)),
        ("BEANSTALK://h:2", ("h", 2)),
        ("beanstalkd://h:3", ("h", 3)),
        ("beanstalk://[::1]:5", ("::1", 5)),
        ("unix:/run/beanstalkd.sock", "/run/beanstalkd.sock"),
        ("unix:///run/beanstalkd.sock", "/run/beanstalkd.sock"),
        ("unix:relative.sock", "relative.sock"),
        ("/run/beanstalkd.sock", "/run/beanstalkd.sock"),
        ("./beanstalkd.sock", "./beanstalkd.sock"),
    ],
)
def test_valid(text: str, expected: tuple[str, int] | str) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "http://example.com:11300",
        "beanstalk://",
        "beanstalk://:11300",
        "beanstalk://host:port",
        "beanstalk://host:0",
        "beanstalk://host:65536",
        "beanstalk://host:-1",
        "beanstalk://host:11300/path",
        "beanstalk://user@host:11300",
        "host:",
        "::1",
        "[::1",
        "[::1]x",
        "unix:",
        "unix://",
        "unix:///",
        "unix://relative",
        "h1:11300,h2:11300",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text)


def test_describe() -> None:
    assert describe(("127.0.0.1", 11300)) == "127.0.0.1:11300"
    assert describe(("::1", 5)) == "[::1]:5"
    assert describe("/tmp/x.sock") == "unix:/tmp/x.sock"


def test_the_cli_reads_the_library_s_parser() -> None:
    import beanproto.address

    assert parse_address is beanproto.address.parse_address
    assert AddressError is beanproto.address.AddressError
