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


#: IPv6 forms that carry an IPv4 address (in the last 32 bits, or bits 16-48 for 6to4):
#: ``64:ff9b::7f00:1`` reaches 127.0.0.1 through a NAT64 gateway, ``2002:7f00:1::`` through
#: 6to4, ``::127.0.0.1`` on stacks that still read the IPv4-compatible form. They are as public
#: as the IPv4 address inside. Local-use NAT64 (RFC 8215) is never public.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        inner = _embedded(address)
        if inner is not None:
            return _public(inner)
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
