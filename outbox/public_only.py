"""Partner webhooks reach the public internet only.

A partner chooses the URL the portal POSTs to. Without a guard, an endpoint at
`http://169.254.169.254/…` (a cloud's metadata service), `https://10.0.0.7/…` or a name that
resolves to one would make the portal's workers send requests inside its own network and show
the answers in the delivery log (server-side request forgery). Which addresses are public is
outbox/addresses.py's rule; this module applies it twice:

- at registration, a URL whose host is an address literal that is not public (or `localhost`)
  is refused with an error the partner can act on (`host_refusal`);
- at every new connection, the host is resolved once, every address it resolves to is checked,
  and the socket connects to one of those checked addresses, never to the name again: a name
  that resolves to a private address, at registration or later (DNS rebinding, or a second
  lookup answering otherwise between check and connect), never gets a socket opened to it.

A name with any non-public address is refused whole, even if a public one is listed too: a
partner's server has no reason to publish a private address, and refusing keeps the outcome
independent of which address the resolver lists first. The refusal is one fixed sentence
(`NOT_SENT`) whatever the name resolved to, whether it resolved at all, and whatever listens
there: no socket is opened, so a partner who controls a name's DNS cannot tell an open internal
port from a closed one, nor an internal name that exists from one that does not.

`WEBHOOK_ALLOW_PRIVATE` (on with DEBUG: the demo's receiver listens on 127.0.0.1) turns both
checks off; outbox/delivery.py then uses a plain session.
"""

import socket
import sys

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from .addresses import not_public_because

NOT_SENT = "not sent: the endpoint's host did not resolve to public addresses only"

AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple]


class NotPublicAddress(requests.ConnectionError):
    """The endpoint's host is (or resolved to) an address that is not public, or did not
    resolve: nothing was sent, and no socket was opened."""


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
        reason = not_public_because(name)
    except ValueError:
        return None  # a name: its addresses are checked when connecting
    return f"{host} is {reason}" if reason else None


def public_addresses(host: str, port: int) -> list[AddressInfo]:
    """Resolve `host` once; its addresses if every one of them is public, else NotPublicAddress.
    A failed lookup is refused with the same words: which internal names exist is no business
    of the partner's."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, allowed_gai_family(), socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # gaierror is an OSError; a bad IDNA label
        raise NotPublicAddress(NOT_SENT) from exc
    if not found or any(not_public_because(str(info[4][0])) for info in found):
        raise NotPublicAddress(NOT_SENT)
    return found


def _connect_checked(conn: HTTPConnection) -> socket.socket:
    """urllib3's `_new_conn`, but connecting to the checked addresses themselves: the name is
    not looked up again (urllib3 would resolve it inside `create_connection`, after our check).
    TLS still verifies the certificate against the name: it wraps this socket with `conn.host`."""
    addresses = public_addresses(conn._dns_host, conn.port)
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if conn.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class _PublicHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_checked(self)


class _PublicHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _connect_checked(self)


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
