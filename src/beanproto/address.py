"""Where a client connects: one reading of an address for the library and the CLI.

Theory of operation: users write addresses in many ways (a ``(host, port)``
pair, a list from a config file, a ``pathlib.Path``, ``$BEANSTALKD_URL``, a
URL), and every client, worker and the command line must read them alike, so
:func:`resolve_address` is the one place that turns any of them into what a
socket connects to: ``(host, port)`` for TCP or a ``str`` Unix socket path.
It is pure (it reads the environment only for ``None``, and resolves no host
name), so it can run, and fail, before anything connects.

How a string is read, in order:

- ``beanstalk://host[:port]`` (or ``beanstalkd://``): TCP; ``unix:///path`` or
  ``unix:path``: a Unix socket;
- a string with a ``/`` (``/run/beanstalkd.sock``, ``./sock``): a Unix socket path;
- otherwise ``host:port``, or ``host`` alone (port 11300), or ``[::1]:11300``
  (IPv6 in brackets). So ``"sock"`` names a *host*: write ``./sock`` or
  ``unix:sock`` for a socket file in the current directory.

Anything else raises :class:`AddressError` (a ``ValueError``) naming the text.

Several servers (a pool, a worker, the command line's ``tubes``, ``stats`` and
``top``): :func:`resolve_addresses` takes a list of addresses, or one string
with the addresses separated by commas (:func:`parse_addresses`):
``beanstalk://h1:11300,h2:11300``, ``h1:11300, h2``, ``unix:///a,unix:///b``. So
a comma never appears in one address string: the singular functions refuse a
list, and a Unix socket path with a comma must be given as a ``pathlib.Path``.
The same server twice (``h1`` and ``h1:11300``) is an error, not collapsed: it
is most likely a typo, and a pool or a sum of statistics would count it twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeAlias, TypeVar, cast

T = TypeVar("T")

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_PORT",
    "ENVIRONMENT_VARIABLE",
    "Address",
    "AddressError",
    "Resolved",
    "describe",
    "parse_address",
    "parse_addresses",
    "resolve_address",
    "resolve_addresses",
]

#: beanstalkd's port.
DEFAULT_PORT: Final = 11300
#: Where a client connects when given no address and ``$BEANSTALKD_URL`` is unset.
DEFAULT_ADDRESS: Final = "127.0.0.1:11300"
#: The environment variable read for ``address=None``.
ENVIRONMENT_VARIABLE: Final = "BEANSTALKD_URL"

#: What a client accepts as an address: ``(host, port)`` (any two-item
#: sequence, e.g. ``[host, port]``), a Unix socket path (``str`` or
#: ``os.PathLike``), or an address string (see the module's docstring).
Address: TypeAlias = tuple[str, int] | Sequence[str | int] | str | os.PathLike[str]
#: What a socket connects to: ``(host, port)``, or a Unix socket path.
Resolved: TypeAlias = tuple[str, int] | str

_FORMS: Final = "expected host:port, beanstalk://host:port, unix:/path or unix:///path"
_ONE: Final = (
    "one address expected, not a list: a client connects to one server "
    "(a Pool or a Worker takes several; resolve_addresses() reads them)"
)


class AddressError(ValueError):
    """An address is none of the accepted forms; the message names it."""


def resolve_address(address: Address | None = None) -> Resolved:
    """What ``address`` connects to: ``(host, port)`` for TCP, or a Unix socket path.

    ``None`` reads ``$BEANSTALKD_URL`` (an :class:`AddressError` then says so),
    else :data:`DEFAULT_ADDRESS`. A ``str`` is parsed by :func:`parse_address`;
    an ``os.PathLike`` is a Unix socket path; a two-item sequence is
    ``(host, port)``. Raises :class:`AddressError` for a malformed address and
    ``TypeError`` for an object that is no address at all.

        >>> resolve_address(("127.0.0.1", 11300))
        ('127.0.0.1', 11300)
        >>> resolve_address(["queue.example.com", 11301])
        ('queue.example.com', 11301)
        >>> resolve_address("beanstalk://[::1]")
        ('::1', 11300)
        >>> resolve_address("/run/beanstalkd.sock")
        '/run/beanstalkd.sock'
    """
    if address is None:
        return _from_environment(parse_address)
    if isinstance(address, str):
        return parse_address(address)
    if isinstance(address, os.PathLike):
        path = os.fspath(address)
        if not isinstance(path, str) or not path:
            raise AddressError(f"{address!r}: a Unix socket path must be a non-empty str path")
        return path
    if isinstance(address, Sequence) and not isinstance(address, (bytes, bytearray)):
        if _several(address):
            raise AddressError(f"{address!r}: {_ONE}")
        if len(address) != 2:
            raise AddressError(f"{address!r}: expected (host, port)")
        host, port = address
        if not isinstance(host, str) or not host:
            raise AddressError(f"{address!r}: the host must be a non-empty str")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise AddressError(f"{address!r}: the port must be an int from 1 to 65535")
        return host, port
    raise TypeError(
        "address must be (host, port), a Unix socket path or an address string, "
        f"not {type(address).__name__}"
    )


def _several(items: Sequence[object]) -> bool:
    """Whether a sequence given as one address is a list of addresses: a list
    of them, or a tuple of pairs or paths (``("h", "11300")`` is a bad pair)."""
    kinds: tuple[type, ...] = (tuple, list, os.PathLike)
    if isinstance(items, list):
        kinds = (str, *kinds)
    if _pair(items):
        return False
    return bool(items) and all(isinstance(i, kinds) for i in items)


def _pair(items: Sequence[object]) -> bool:
    """Whether a sequence is one ``(host, port)``: two items, the second a port
    (an ``int``, or digits: a bad pair, which :func:`resolve_address` refuses)."""
    if len(items) != 2:
        return False
    port = items[1]
    return isinstance(port, int) or (isinstance(port, str) and port.isdigit())


def parse_address(text: str) -> Resolved:
    """Parse an address string: ``(host, port)`` for TCP, or a Unix socket path.

    Raises :class:`AddressError` with a message fit for the user.

        >>> parse_address("localhost")
        ('localhost', 11300)
        >>> parse_address("unix:///run/beanstalkd.sock")
        '/run/beanstalkd.sock'
    """
    original = text
    text = text.strip()
    if not text:
        raise AddressError(f"empty address ({_FORMS})")
    if "," in text:
        raise AddressError(f"{original!r}: {_ONE}")
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme == "unix":
            if not rest.startswith("/") or rest == "/":
                raise AddressError(f"{original!r}: expected unix:///absolute/path")
            return rest
        if scheme not in ("beanstalk", "beanstalkd"):
            raise AddressError(f"{original!r}: unknown scheme {scheme!r} ({_FORMS})")
        if rest.endswith("/"):
            rest = rest[:-1]
        return _host_port(rest, original)
    if text.lower().startswith("unix:"):
        path = text[5:]
        if not path:
            raise AddressError(f"{original!r}: no socket path after 'unix:'")
        return path
    if "/" in text:
        return text
    return _host_port(text, original)


def _host_port(text: str, original: str) -> tuple[str, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"{original!r}: unclosed '[' in the host")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise AddressError(f"{original!r}: junk after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise AddressError(f"{original!r}: put an IPv6 address in brackets, e.g. [::1]:11300")
    else:
        host, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
    if not host:
        raise AddressError(f"{original!r}: no host ({_FORMS})")
    if any(c in host for c in "/?#@ \t"):
        raise AddressError(f"{original!r}: {host!r} is not a host name ({_FORMS})")
    if port_text is None:
        return host, DEFAULT_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise AddressError(f"{original!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def resolve_addresses(addresses: str | Iterable[Address] | Address | None = None) -> list[Resolved]:
    """What several addresses connect to, in the order given (see :func:`resolve_address`).

    ``None`` reads ``$BEANSTALKD_URL`` (one address or a comma-separated list),
    else :data:`DEFAULT_ADDRESS`. A ``str`` is a comma-separated list
    (:func:`parse_addresses`); an ``os.PathLike`` is one Unix socket path; a
    two-item sequence whose second item is a port (an ``int``; digits are refused
    as a bad pair) is one ``(host, port)``; any other iterable holds addresses,
    each read by :func:`resolve_address`. Raises :class:`AddressError` for a
    malformed address, an empty list or the same server twice, and ``TypeError``
    for an object that is no address.

        >>> resolve_addresses("beanstalk://h1:11300, h2")
        [('h1', 11300), ('h2', 11300)]
        >>> resolve_addresses([("h1", 11301), "unix:///run/b.sock"])
        [('h1', 11301), '/run/b.sock']
        >>> resolve_addresses(("h1", 11301))
        [('h1', 11301)]
    """
    if addresses is None:
        return _from_environment(parse_addresses)
    if isinstance(addresses, str):
        return parse_addresses(addresses)
    if isinstance(addresses, os.PathLike):
        return [resolve_address(addresses)]
    if (
        isinstance(addresses, Sequence)
        and not isinstance(addresses, (bytes, bytearray))
        and _pair(addresses)
    ):
        return [resolve_address(cast(Address, addresses))]
    if not isinstance(addresses, Iterable) or isinstance(addresses, (bytes, bytearray)):
        raise TypeError(
            "addresses must be an address, a comma-separated str or a list of addresses, "
            f"not {type(addresses).__name__}"
        )
    items = list(cast(Iterable[Address], addresses))
    if not items:
        raise AddressError("no address in an empty list")
    return _distinct([resolve_address(item) for item in items], repr(items))


def parse_addresses(text: str) -> list[Resolved]:
    """Parse a comma-separated list of addresses (spaces around the commas are fine).

    Each item is read by :func:`parse_address`. Raises :class:`AddressError` naming
    the text for an empty item, a malformed address or the same server twice.

        >>> parse_addresses("beanstalk://h1:11300,h2:11301")
        [('h1', 11300), ('h2', 11301)]
        >>> parse_addresses("unix:///a.sock, [::1]")
        ['/a.sock', ('::1', 11300)]
    """
    items = text.split(",")
    if any(not item.strip() for item in items):
        what = "an empty address" if len(items) == 1 else "an empty item in the list"
        raise AddressError(f"{text!r}: {what} ({_FORMS})")
    out: list[Resolved] = []
    for item in items:
        try:
            out.append(parse_address(item))
        except AddressError as exc:
            raise AddressError(f"{text!r}: {exc}" if len(items) > 1 else str(exc)) from None
    return _distinct(out, repr(text))


def _distinct(addresses: list[Resolved], shown: str) -> list[Resolved]:
    seen: set[Resolved] = set()
    for address in addresses:
        if address in seen:
            raise AddressError(f"{shown}: {describe(address)} is given twice")
        seen.add(address)
    return addresses


def describe(address: Resolved) -> str:
    """How an address is shown in messages: ``host:port``, ``[::1]:port`` or ``unix:/path``."""
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _from_environment(parse: Callable[[str], T]) -> T:
    """``$BEANSTALKD_URL`` read with ``parse`` (an error names the variable), else
    the default address."""
    text = os.environ.get(ENVIRONMENT_VARIABLE)
    try:
        return parse(text or DEFAULT_ADDRESS)
    except AddressError as exc:
        raise AddressError(f"invalid ${ENVIRONMENT_VARIABLE}: {exc}") from None
