"""Where the service may send HTTP requests on a user's behalf (status callbacks).

A callback URL comes from an API client. Without a check, it could make the service POST to
its own network: a cloud metadata endpoint, Redis's neighbours, an admin port on localhost.
The host is resolved here, every address it resolves to must be public, and the request then
goes to the address that was checked (pinned, so a second DNS answer cannot swap it for a
private one), with the original host name in the Host header and for TLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The destination is not allowed; retrying will not change that."""


@dataclass(frozen=True)
class Destination:
    """The request to make: ``url`` names the checked address instead of the host."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


async def resolve(url: str, *, allow_private: bool) -> Destination:
    """The pinned request for ``url``. Raises :class:`Refused` for a non-public address (unless
    ``allow_private``) and OSError when the name does not resolve (worth retrying)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https"):
        raise Refused("not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise OSError(f"{host} has no address") from None
    if not allow_private:
        for address in addresses:
            if not _public(address):
                raise Refused(
                    f"{host} resolves to {address}, which is not a public address "
                    "(CALLBACK_ALLOW_PRIVATE=true allows it)"
                )
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    headers = {"Host": parts.netloc.rpartition("@")[2]}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Destination(pinned, headers, extensions)
