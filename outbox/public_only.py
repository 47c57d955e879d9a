"""Partner webhooks reach the public internet only.

A partner chooses the URL the portal POSTs to. Without a guard, an endpoint at
`http://169.254.169.254/…` (a cloud's metadata service), `https://10.0.0.7/…` or a name that
resolves to one would make the portal's workers send requests inside its own network and show
the answers' status codes in the delivery log (server-side request forgery).

Two checks: a URL naming a non-public address outright is refused when the endpoint is
registered (an error the partner can act on); and every delivery checks the address the socket
actually connected to, before a byte of HTTP is sent, so a name that resolves to a private
address, at registration or later (DNS rebinding), is refused too. `WEBHOOK_ALLOW_PRIVATE`
(on with DEBUG: the demo's receiver listens on 127.0.0.1) turns both off.
"""

import ipaddress

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class NotPublicAddress(requests.ConnectionError):
    """The endpoint's host is (or resolved to) an address inside a private network."""


def is_public(address: str) -> bool:
    """A unicast address of the public internet (not private, loopback, link-local, shared
    carrier-grade NAT, reserved, documentation or multicast)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone index is not part of it
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def not_public_cause(exc: BaseException) -> NotPublicAddress | None:
    """The refusal inside what requests raised (urllib3 wraps it twice), for the delivery log."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NotPublicAddress):
            return current
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None


def host_refusal(host: str) -> str | None:
    """Why a URL's host is refused before any lookup, or None: an address literal that is not
    public, or a name every system resolves to itself. Other names are checked at delivery."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"'{host}' is this machine"
    try:
        public = is_public(name)
    except ValueError:
        return None  # a name: its addresses are checked when connecting
    return None if public else f"{host} is not a public address"


class _PublicPeer:
    """Connects as usual, then refuses a peer that is not public (the socket is closed before
    anything is sent)."""

    def _new_conn(self):
        sock = super()._new_conn()
        peer = sock.getpeername()[0]
        if not is_public(peer):
            sock.close()
            raise NotPublicAddress(
                f"{self.host} resolved to {peer}, which is not a public address: not sent"
            )
        return sock


class _PublicHTTPConnection(_PublicPeer, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicPeer, HTTPSConnection):
    pass


class _PublicHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicHTTPConnectionPool,
            "https": _PublicHTTPSConnectionPool,
        }


def public_session() -> requests.Session:
    """A session that only connects to public addresses. It ignores the proxy variables of the
    environment: through a proxy the peer would be the proxy, and the check would be moot."""
    session = requests.Session()
    session.trust_env = False
    adapter = PublicOnlyAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
