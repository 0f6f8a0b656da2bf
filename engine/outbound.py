"""The SSRF guard for outbound alert webhooks: which URLs Taskyard may call.

A URL must be ``http`` or ``https`` with a host. The host is resolved and every address it resolves to must be
public: private, loopback, link-local (169.254.0.0/16, where cloud metadata lives), multicast, unspecified and
reserved addresses are refused, unless the host as written (name or IP literal) is in ``outbound.allow_hosts``.
The check runs when a subscription is made and again before every delivery attempt (DNS may have changed).

Limitation: the HTTP client resolves the name again when it connects, so a DNS answer that changes between
the check and the connection (DNS rebinding within one attempt) is not caught. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from urllib.parse import urlsplit

from engine.errors import OutboundRefused

__all__ = ["MAX_URL_CHARS", "Resolver", "check_url", "resolve"]

MAX_URL_CHARS = 2048  # characters of a webhook URL at most

Resolver = Callable[[str], list[str]]  # host -> the IP addresses it resolves to


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, blocking); [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, allow_hosts: Collection[str], *, resolver: Resolver = resolve) -> str:
    """``url`` when Taskyard may call it, else OutboundRefused saying why. Blocking (DNS): async callers run it
    in a thread."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise OutboundRefused(f"invalid url: an http(s) URL of at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise OutboundRefused("invalid url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise OutboundRefused("invalid url: must be http or https with a host")
    if parts.username or parts.password:
        raise OutboundRefused("invalid url: credentials in the URL are not allowed")
    allowed = {h.lower().strip("[]") for h in allow_hosts}
    if host.lower() in allowed:
        return url
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        names = resolver(host)
        if not names:
            raise OutboundRefused(f"webhook url refused: {host} does not resolve") from None
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in names]
    for address in addresses:
        if str(address) in allowed:
            continue
        if _forbidden(address):
            raise OutboundRefused(f"webhook url refused: {host} resolves to a non-public address ({address}); "
                                  "add it to outbound.allow_hosts if it is meant to be reached")
    return url


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
            or address.is_unspecified or address.is_reserved or not address.is_global)
