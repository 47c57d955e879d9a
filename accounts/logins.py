"""Login throttling (django-axes; docs/deploy.md, "Security"): the address a login is counted
against, how long a lock lasts, and who is locked until when.

Axes keeps one `AccessAttempt` row per (username, address, user agent) that failed: its count of
failures and the time of the last one. A row counts while its last failure is within the
cool-off; failures are summed per username and, separately, per address
(`AXES_LOCKOUT_PARAMETERS`), and either sum reaching `AXES_FAILURE_LIMIT` locks. The reads here
follow the same rule, so the lockout page and the console say what axes will do.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from ipaddress import ip_address

from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's address (axes' AXES_CLIENT_IP_CALLABLE).

    REMOTE_ADDR is the socket's peer: the client, or the last proxy in front of us. Behind
    TRUSTED_PROXY_COUNT proxies that each append the address they saw to X-Forwarded-For, the
    client is the entry that many places from the right; entries further left are whatever the
    client wrote and are never read. A header shorter than that, or an entry that is no
    address, means the request did not come through the proxies: the peer is used.
    """
    peer = request.META.get("REMOTE_ADDR")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(hops) < proxies:
        return peer
    try:
        return str(ip_address(hops[-proxies]))
    except ValueError:
        return peer


def login_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username a failure is counted against (axes' AXES_USERNAME_CALLABLE): the one typed,
    cut to the 255 characters axes stores. Django's login form does not enforce the username's
    length before authenticating, and no account's name is longer than 150."""
    username = (credentials or {}).get("username", request.POST.get("username"))
    return None if username is None else str(username)[:255]


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """How long failures count (axes' AXES_COOLOFF_TIME), hence how long a lock lasts."""
    return timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES)


def _lock_end(rows: Iterable[tuple[datetime, int]]) -> datetime | None:
    """When the failures of `rows` ((last failure, failures), newest first) stop locking.

    Rows leave the window oldest first; the lock lasts until the newest rows alone stay under
    the limit, i.e. until the row whose failures brought the running sum to the limit leaves.
    """
    total = 0
    for last_failure_at, failures in rows:
        total += failures
        if total >= settings.AXES_FAILURE_LIMIT:
            return last_failure_at + cool_off()
    return None


def lock_ends_at(*, username: str | None, address: str | None, now: datetime) -> datetime | None:
    """When logins as `username` from `address` are let through again; None if they are now."""
    recent = AccessAttempt.objects.filter(attempt_time__gte=now - cool_off())
    ends = []
    for field, value in (("username", username), ("ip_address", address)):
        if value is None:
            continue
        rows = (
            recent.filter(**{field: value})
            .order_by("-attempt_time")
            .values_list("attempt_time", "failures_since_start")
        )
        end = _lock_end(rows)
        if end is not None:
            ends.append(end)
    return max(ends, default=None)


def usernames_locked(*, usernames: Iterable[str], now: datetime) -> dict[str, datetime]:
    """The usernames among `usernames` whose own failures lock them now, with when it ends.

    A lock by address (failures from the user's network under other names) is not theirs to
    show: it lifts with the cool-off or from the admin's list of attempts.
    """
    rows = (
        AccessAttempt.objects.filter(
            username__in=list(usernames), attempt_time__gte=now - cool_off()
        )
        .order_by("-attempt_time")
        .values_list("username", "attempt_time", "failures_since_start")
    )
    by_username: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for username, last_failure_at, failures in rows:
        by_username[username].append((last_failure_at, failures))
    locked = {}
    for username, failures in by_username.items():
        end = _lock_end(failures)
        if end is not None:
            locked[username] = end
    return locked


# A browser's User-Agent is kept for evidence, cut to what the rows hold (some run to kilobytes).
USER_AGENT_KEPT = 255


def request_origin(request: HttpRequest | None) -> tuple[str | None, str]:
    """Where a request came from, as the login history and terms acceptances keep it: the
    client's address (client_address; None when it is no address, e.g. a Unix socket's peer)
    and its User-Agent, cut to USER_AGENT_KEPT characters."""
    if request is None:
        return None, ""
    address = client_address(request)
    try:
        address = str(ip_address(address)) if address else None
    except ValueError:
        address = None
    return address, request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_KEPT]
