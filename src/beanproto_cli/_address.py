"""Where the command-line tool connects: ``--address``, ``BEANSTALKD_URL``, or the default.

The parsing is the library's (:mod:`beanproto.address`), so an address means the
same to the command line and to a client. Accepted forms (both for ``--address``
and for ``BEANSTALKD_URL``):

- ``host:port``, ``host`` (port 11300), ``[::1]:11300`` (IPv6 in brackets);
- ``beanstalk://host:port`` or ``beanstalk://host`` (``beanstalkd://`` works too);
- ``unix:/path/to/socket``, ``unix:///path/to/socket``, or a path with a ``/``;
- several of them separated by commas (``tubes``, ``stats``, ``top``, ``worker`` and
  ``exporter``).
"""

from __future__ import annotations

from beanproto.address import (
    DEFAULT_ADDRESS,
    DEFAULT_PORT,
    AddressError,
    describe,
    parse_address,
    parse_addresses,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_PORT",
    "AddressError",
    "describe",
    "parse_address",
    "parse_addresses",
]
