"""Where a webhook may be sent: public addresses only, checked when the URL is saved and again, on the
address actually connected to, at every delivery.

Webhook URLs come from integrators, and the worker POSTs to them from inside the clinic's network, so an
unchecked URL is a way to make the server talk to itself or its neighbours (SSRF): the database admin port,
a cloud metadata service, an intranet HIS. The rules:

- Hosts are read the way the operating system reads them: `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`
  and `0` are IPv4 addresses to `inet_aton` (and so to the resolver), not names; IPv6 addresses that embed an
  IPv4 one (`::ffff:127.0.0.1`, 6to4, NAT64) are judged by the IPv4 address too.
- Loopback, private, link-local, shared (100.64/10), reserved, multicast and unspecified addresses are
  refused, unless the operator lists their network in WEBHOOK_ALLOWED_PRIVATE_NETWORKS (a HIS on the
  intranet) or, for loopback, local receivers are allowed (development: WEBHOOK_ALLOW_HTTP_LOCALHOST,
  default on only in development, never in production).
- A name is resolved when the URL is saved (every address it has must be allowed; a name that does not
  resolve yet is accepted and judged at delivery) and again at every delivery, and the request goes to the
  address that was checked (`PinnedTarget`): the connection is made to that IP, with the real name in the
  Host header and as the TLS server name (SNI and certificate check), so a name that resolves public when
  checked and private a moment later (DNS rebinding) never reaches the private address.
- Plain http only to a loopback receiver while local receivers are allowed, never with ENVIRONMENT=production.
- Redirects are not followed (the client has follow_redirects off), and proxies from the environment are not
  used (trust_env off): a proxy would resolve the name itself.

Tests replace `resolver` (no public DNS in tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx

from app.core.settings import get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

# RFC 6761: these names are the local machine whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain")
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# How long saving a subscription waits for DNS before accepting the name (it is checked again at delivery).
SAVE_RESOLVE_TIMEOUT_SECONDS = 3.0


class TargetRefused(ValueError):
    """This URL or address may not receive webhooks; the message says why (shown to the integrator). A
    ValueError, so a schema validator turns it into a 422 naming the field."""


class TargetUnresolved(Exception):
    """The name does not resolve (right now)."""


# ------------------------------------------------------------------------------------------- settings


def local_targets_allowed() -> bool:
    """Loopback receivers (and plain http to them): development only, unless switched off."""
    settings = get_settings()
    if settings.production:
        return False
    if settings.webhook_allow_http_localhost is not None:
        return settings.webhook_allow_http_localhost
    return settings.environment.strip().lower() == "development"


@lru_cache(maxsize=8)
def _parse_networks(spec: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def allowed_private_networks() -> tuple[Network, ...]:
    """WEBHOOK_ALLOWED_PRIVATE_NETWORKS: the CIDRs an operator opened for intranet receivers."""
    return _parse_networks(get_settings().webhook_allowed_private_networks or "")


# ------------------------------------------------------------------------------------------- addresses


def literal_address(host: str) -> IPAddress | None:
    """The address a host is when it is written as one, read as the OS reads it (inet_aton's decimal,
    octal, hex and short forms for IPv4; IPv6 with an optional zone); None for a name."""
    host = host.strip("[]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    if not host or not re.fullmatch(r"[0-9a-fA-FxX.]+", host):
        return None  # inet_aton also accepts trailing garbage after a space; a host has none
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes an address non-public, or None for a public unicast address."""
    for candidate in (ip, _embedded_ipv4(ip)):
        if candidate is None:
            continue
        if candidate.is_unspecified:
            return "unspecified"
        if candidate.is_loopback:
            return "loopback"
        if candidate.is_link_local:
            return "link-local"
        if candidate.is_multicast:
            return "multicast"
        if candidate.is_private:
            return "private"
        if candidate.is_reserved:
            return "reserved"
        if not candidate.is_global:
            return "not public"
    return None


def _is_loopback(ip: IPAddress) -> bool:
    embedded = _embedded_ipv4(ip)
    return ip.is_loopback or (embedded is not None and embedded.is_loopback)


def address_refusal(ip: IPAddress) -> str | None:
    """Why webhooks may not go to this address, or None when they may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    kind = _kind(ip)
    if kind is None:
        return None
    if any(ip in network for network in allowed_private_networks()):
        return None
    if kind == "loopback" and local_targets_allowed():
        return None
    return (f"{ip} is a {kind} address; webhooks go to public addresses only (an intranet receiver's network "
            "can be allowed with WEBHOOK_ALLOWED_PRIVATE_NETWORKS)")


def _is_local_name(host: str) -> bool:
    return host in LOCAL_NAMES or host.endswith(".localhost")


# ------------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class ParsedTarget:
    scheme: str
    host: str  # lower-case, IDNA-encoded, without brackets or a trailing dot
    port: int
    address: IPAddress | None  # when the host is written as an address


def parse_url(url: str) -> ParsedTarget:
    """Check the URL's form and everything that needs no DNS; raise TargetRefused (or ValueError for a
    malformed URL) with a message for the integrator."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; the signature authenticates us")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    raw_host = (parts.hostname or "").rstrip(".")  # a fully qualified "127.0.0.1." is still that address
    if not raw_host:
        raise ValueError("must name a host")
    address = literal_address(raw_host)
    if address is None:
        try:
            host = raw_host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError("has a host name that is not valid") from exc
        if not _HOSTNAME.match(host) or len(host) > 253:
            raise ValueError("has a host name that is not valid")
    else:
        host = str(address)
    target = ParsedTarget(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), address)
    loopback = _is_local_name(host) or (address is not None and _is_loopback(address))
    if target.scheme == "http":
        if get_settings().production:
            raise TargetRefused("must use https:// (plain http is never allowed in production)")
        if not (loopback and local_targets_allowed()):
            raise TargetRefused("must use https:// (plain http only to localhost in development)")
    if address is not None:
        refusal = address_refusal(address)
        if refusal:
            raise TargetRefused(f"must not point at a non-public address: {refusal}")
    elif _is_local_name(host) and not local_targets_allowed():
        raise TargetRefused(f"must not point at this machine ({host})")
    return target


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses the OS resolver gives for a name (getaddrinfo, as a connection would use)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror, and whatever else the resolver raises
        raise TargetUnresolved(f"{host} does not resolve: {exc}") from exc
    found: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


resolver: Resolver = system_resolver  # replaced in tests


async def resolve(host: str, port: int, *, within_seconds: float) -> list[IPAddress]:
    try:
        async with asyncio.timeout(within_seconds):
            found = await resolver(host, port)
    except TimeoutError as exc:
        raise TargetUnresolved(f"{host} did not resolve within {within_seconds:g} s") from exc
    if not found:
        raise TargetUnresolved(f"{host} has no address")
    return found


def _check_addresses(target: ParsedTarget, addresses: list[IPAddress]) -> None:
    for ip in addresses:
        refusal = address_refusal(ip)
        if refusal:
            raise TargetRefused(f"{target.host} resolves to {refusal}")
        if target.scheme == "http" and not _is_loopback(ip):
            raise TargetRefused(f"{target.host} resolves to {ip}: plain http only to this machine")


async def check_on_save(url: str) -> None:
    """Saving a subscription: the URL's form, and where its name points now. A name that does not resolve
    (yet, or DNS is down) is accepted: delivery checks it again and will not send to a forbidden address."""
    target = parse_url(url)
    if target.address is not None:
        return
    try:
        addresses = await resolve(target.host, target.port, within_seconds=SAVE_RESOLVE_TIMEOUT_SECONDS)
    except TargetUnresolved:
        return
    _check_addresses(target, addresses)


# ------------------------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class PinnedTarget:
    """A request to the checked address: the URL carries the IP, the Host header and the TLS server name
    (SNI and certificate check) carry the real name."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, object]
    address: IPAddress


async def pin(url: str, *, resolve_within_seconds: float) -> PinnedTarget:
    """Resolve and check the URL now, for one delivery; raise TargetRefused or TargetUnresolved."""
    try:
        target = parse_url(url)
    except ValueError as exc:
        raise TargetRefused(f"the URL {exc}") from exc
    addresses = [target.address] if target.address is not None else \
        await resolve(target.host, target.port, within_seconds=resolve_within_seconds)
    _check_addresses(target, addresses)
    address = addresses[0]
    original = httpx.URL(url)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    extensions: dict[str, object] = {}
    if target.scheme == "https" and target.address is None:
        extensions["sni_hostname"] = target.host
    return PinnedTarget(url=original.copy_with(host=str(address)), headers={"Host": host_header},
                        extensions=extensions, address=address)
