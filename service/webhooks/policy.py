"""Which ``callback_url`` targets the service may call: an allow-list from the settings, checked twice.

At submit, the URL's host must be on ``SMARTCASH_WEBHOOK_ALLOWED_HOSTS`` (a host name, ``*.suffix``, an IP
address or a CIDR); an empty list refuses every callback. Each address the host resolves to must then be
public (globally routable) or inside a listed address or CIDR, so an allowed name cannot point at the
metadata service, localhost or the cluster network. Before every delivery the name is resolved and checked
again, and the connection goes to the checked address (the URL's host travels as ``Host`` and TLS SNI): a
DNS answer that changes after the check (DNS rebinding) is never connected to. Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from service.errors import ServiceError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
MAX_URL_CHARS = 2048
_FIX = (
    "use an http(s) URL whose host is listed in SMARTCASH_WEBHOOK_ALLOWED_HOSTS and resolves to a public "
    "address (or to an address listed there)"
)


class CallbackRefused(ServiceError):
    """A ``callback_url`` the service will not call (400 at submit; a failed attempt at delivery)."""

    code = "callback_refused"


@dataclass(frozen=True)
class CallbackTarget:
    """A checked URL and the address a delivery connects to."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, at least "/"
    address: IPAddress

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{literal}:{self.port}{self.path}"

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the OS resolver), in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class CallbackPolicy:
    """The allow-list of ``SMARTCASH_WEBHOOK_ALLOWED_HOSTS`` and the checks above."""

    def __init__(self, allowed: str, resolver: Resolver = system_resolver) -> None:
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[IPNetwork] = []
        self._resolver = resolver
        for entry in (part.strip().lower().rstrip(".") for part in allowed.split(",")):
            if entry:
                self._add(entry)

    def _add(self, entry: str) -> None:
        try:
            self.networks.append(ipaddress.ip_network(entry, strict=False))
            return
        except ValueError:
            pass
        if entry.startswith("*."):
            self.suffixes.append(entry[1:])  # ".example.com"
        else:
            self.names.add(entry)

    @property
    def enabled(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def check(self, url: str) -> CallbackTarget:
        """The target of ``url`` once its syntax, host and resolved addresses pass; else ``CallbackRefused``.

        Blocking (DNS): call it from a worker thread."""
        parts = _split(url)
        host = (parts.hostname or "").rstrip(".")
        port = _port(parts)
        literal = _ip_literal(host)
        if literal is not None:
            if not self._listed(literal):
                raise CallbackRefused(f"callback_url address {host} is not allowed", _FIX)
        elif not self._name_allowed(host):
            raise CallbackRefused(f"callback_url host {host!r} is not allowed", _FIX)
        address = literal if literal is not None else self._resolve(host, port)
        path = parts.path or "/"
        path = f"{path}?{parts.query}" if parts.query else path
        return CallbackTarget(url, parts.scheme, host, port, path, address)

    def _name_allowed(self, host: str) -> bool:
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def _listed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def _permitted(self, address: IPAddress) -> bool:
        return self._listed(address) or (address.is_global and not address.is_multicast)

    def _resolve(self, host: str, port: int) -> IPAddress:
        try:
            answers = self._resolver(host, port)
            found = [_unmapped(ipaddress.ip_address(item.split("%")[0])) for item in answers]
        except (OSError, UnicodeError, ValueError) as exc:
            raise CallbackRefused(f"callback_url host {host!r} does not resolve ({exc})", _FIX) from exc
        if not found:
            raise CallbackRefused(f"callback_url host {host!r} resolves to no address", _FIX)
        refused = [str(address) for address in found if not self._permitted(address)]
        if refused:
            raise CallbackRefused(
                f"callback_url host {host!r} resolves to {', '.join(refused)}: not a public address and "
                "not listed",
                _FIX,
            )
        return found[0]


def _split(url: str) -> SplitResult:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"callback_url must be a URL of at most {MAX_URL_CHARS} characters", _FIX)
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise CallbackRefused("callback_url contains whitespace or control characters", _FIX)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise CallbackRefused(f"callback_url is not a URL ({exc})", _FIX) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("callback_url must be an http:// or https:// URL with a host", _FIX)
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("callback_url must not carry credentials (user:password@)", _FIX)
    return parts


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"callback_url has an invalid port ({exc})", _FIX) from exc
    return port if port is not None else (443 if parts.scheme == "https" else 80)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


def _unmapped(address: Any) -> IPAddress:
    """``::ffff:127.0.0.1`` is 127.0.0.1: judge IPv4-mapped IPv6 addresses as the IPv4 they reach."""
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address
