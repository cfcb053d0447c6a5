"""Where the command-line tool connects: ``--address``, ``BEANSTALKD_URL``, or the default.

Accepted forms (both for ``--address`` and for ``BEANSTALKD_URL``):

- ``host:port``, ``host`` (port 11300), ``[::1]:11300`` (IPv6 in brackets);
- ``beanstalk://host:port`` or ``beanstalk://host`` (``beanstalkd://`` works too);
- ``unix:/path/to/socket`` or ``unix:///path/to/socket``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_PORT", "AddressError", "describe", "parse_address"]

DEFAULT_PORT: Final = 11300
#: Used when neither ``--address`` nor ``BEANSTALKD_URL`` is given.
DEFAULT_ADDRESS: Final = "127.0.0.1:11300"

_FORMS: Final = "expected host:port, beanstalk://host:port, unix:/path or unix:///path"


class AddressError(ValueError):
    """The address text is not one of the accepted forms."""


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


def parse_address(text: str) -> tuple[str, int] | str:
    """Parse an address: ``(host, port)`` for TCP, or a Unix socket path (``str``).

    Raises :class:`AddressError` with a message fit for the user.
    """
    original = text
    text = text.strip()
    if not text:
        raise AddressError(f"empty address ({_FORMS})")
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
    return _host_port(text, original)


def describe(address: tuple[str, int] | str) -> str:
    """How an address is shown in messages: ``host:port`` or ``unix:/path``."""
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
