"""Webhook targets that cannot be turned against the gateway's own network (SSRF), and the pinned sender.

`check_target` accepts only https URLs (http too when the operator allows
private targets, for a local stack), without credentials, whose host resolves
only to public addresses.  Every resolved address must pass: a name with one
public and one internal address is refused.  `pinned_post` checks again at
send time and connects to exactly the address it checked, with the URL's name
kept for the Host header, SNI and certificate verification, so a DNS answer
that changes between check and connect (rebinding) cannot redirect the
request.  Redirects are never followed and no proxy from the environment is
used.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.errors import FieldError, Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, Oracle legacy).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
# Ranges refused besides what `ipaddress` calls private, loopback, link-local, multicast, reserved or
# unspecified (its tables differ between Python patch releases, so the important ones are spelled out).
_FORBIDDEN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SCHEMES_PUBLIC = frozenset({"https"})
_SCHEMES_PRIVATE = frozenset({"https", "http"})
MAX_URL_LENGTH = 2000


class WebhookUrlForbidden(Unprocessable):
    """The webhook URL is not an allowed target (422 WEBHOOK_URL_FORBIDDEN); `reason` says which rule."""

    code = "WEBHOOK_URL_FORBIDDEN"
    title = "Webhook URL not allowed"

    def __init__(self, reason: str, detail: str):
        super().__init__(detail, errors=[FieldError(self.code, "url", detail)])
        self.reason = reason


@dataclass(frozen=True)
class ResolvedTarget:
    """A checked URL: where to connect (the checked addresses) and what to call the host."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, what goes on the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        """The Host header value: the name from the URL, with the port when it is not the default."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def is_forbidden_address(ip: IPAddress) -> bool:
    """True for any address a webhook must not reach: internal, special-purpose or metadata."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_address(embedded)
    if ip in METADATA_ADDRESSES or any(ip in network for network in _FORBIDDEN_NETWORKS):
        return True
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16) and NAT64 (64:ff9b::/96) addresses reach an IPv4 host.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refuse(reason: str, detail: str) -> WebhookUrlForbidden:
    return WebhookUrlForbidden(reason, detail)


def parse_target(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL, before any resolution."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _refuse("malformed", "The webhook URL must be an absolute URL of at most 2000 characters.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _refuse("malformed", "The webhook URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refuse("malformed", "The webhook URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in (_SCHEMES_PRIVATE if allow_private else _SCHEMES_PUBLIC):
        raise _refuse("scheme", "The webhook URL must use https.")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise _refuse("userinfo", "The webhook URL must not contain a user name or password.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refuse("malformed", "The webhook URL has no host.")
    try:  # internationalized names go on the wire (DNS, Host, SNI) in their ASCII form
        host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise _refuse("malformed", "The webhook URL's host is not a valid name.") from None
    if port == 0:
        raise _refuse("malformed", "The webhook URL's port is not valid.")
    port = port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port, path


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to (IP literals resolve to themselves), scope ids dropped."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _refuse("unresolvable", "The webhook URL's host does not resolve.") from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _refuse("unresolvable", "The webhook URL's host does not resolve.")
    return tuple(addresses)


def check_target(url: str, *, allow_private: bool) -> ResolvedTarget:
    """The URL's checked target, or WebhookUrlForbidden when it may not be called."""
    scheme, host, port, path = parse_target(url, allow_private=allow_private)
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                raise _refuse("unresolvable", "The webhook URL's host does not resolve.") from None
            if is_forbidden_address(ip):
                raise _refuse("address", "The webhook URL resolves to a loopback, private, link-local or "
                                         "otherwise internal address.")
    return ResolvedTarget(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


def pinned_post(url: str, *, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool,
                ca_certs: str | None = None) -> int:
    """POST once to the checked address of `url`; returns the status code, never follows a redirect.

    Raises WebhookUrlForbidden if the URL no longer passes the check, and the
    network error (an OSError or urllib3 error) if no address answers.  The
    response body is never read.
    """
    import urllib3

    target = check_target(url, allow_private=allow_private)
    request_headers = {**headers, "Host": target.host_header}
    limit = urllib3.Timeout(connect=timeout, read=timeout, total=timeout)
    last_error: Exception | None = None
    for address in target.addresses[:4]:
        if target.scheme == "https":
            if ca_certs is None:
                import certifi

                ca_certs = certifi.where()
            pool = urllib3.HTTPSConnectionPool(
                address, target.port, timeout=limit, retries=False, maxsize=1, cert_reqs="CERT_REQUIRED",
                ca_certs=ca_certs, server_hostname=target.host, assert_hostname=target.host)
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, timeout=limit, retries=False, maxsize=1)
        try:
            response = pool.urlopen("POST", target.path, body=body, headers=request_headers, redirect=False,
                                    retries=False, preload_content=False, assert_same_host=False)
        except urllib3.exceptions.NewConnectionError as error:
            last_error = error  # refused or unreachable: try the name's next address
            continue
        except urllib3.exceptions.ConnectTimeoutError as error:
            last_error = error
            continue
        finally:
            pool.close()
        status = response.status
        response.close()  # the body is of no interest and may be large
        return status
    assert last_error is not None
    raise last_error
