"""API key scopes, rotation, expiry, revocation and `last_used_at`, through the services and
`create_api_key`."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import selectors, services
from accounts.errors import Conflict, DomainError
from accounts.models import ApiKey
from tests.conftest import client_with_key

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_a_rotated_key_works_beside_the_new_one_until_its_end(catalog, partner, frozen):
    old, old_raw = services.api_key_create(partner=partner, name="prod", scopes=["read"])
    new, new_raw = services.api_key_rotate(key=old, old_key_expires_at=NOW + timedelta(hours=2))
    assert (new.partner, new.account, new.name, new.scopes) == (partner, None, "prod", ["read"])
    assert new.rotated_from == old
    for raw in (old_raw, new_raw):
        assert client_with_key(raw).get("/api/v1/plans").status_code == 200
    frozen.move_to(NOW + timedelta(hours=2, seconds=1))
    assert client_with_key(old_raw).get("/api/v1/plans").status_code == 401
    assert client_with_key(new_raw).get("/api/v1/plans").status_code == 200
    with pytest.raises(Conflict):
        services.api_key_rotate(key=old)  # expired: nothing to rotate
    services.api_key_rotate(key=new)
    with pytest.raises(Conflict, match="already rotated"):
        services.api_key_rotate(key=new)


def test_rotation_defaults_to_a_day_and_refuses_a_past_end(partner):
    old, _ = services.api_key_create(partner=partner)
    with pytest.raises(DomainError):
        services.api_key_rotate(key=old, old_key_expires_at=NOW - timedelta(minutes=1))
    services.api_key_rotate(key=old)
    old.refresh_from_db()
    assert old.expires_at == NOW + timedelta(hours=24)


def test_revocation_is_immediate_and_keeps_its_first_time(catalog, partner, frozen):
    key, raw = services.api_key_create(partner=partner)
    services.api_key_revoke(key=key)
    frozen.shift(60)
    assert services.api_key_revoke(key=key).revoked_at == NOW
    assert client_with_key(raw).get("/api/v1/plans").status_code == 401


def test_unknown_scopes_are_refused(partner):
    with pytest.raises(DomainError, match="events:write"):
        services.api_key_create(partner=partner, scopes=["admin"])
    with pytest.raises(DomainError):
        services.api_key_create(partner=partner, scopes=[])


def test_last_used_is_written_at_most_once_a_minute(catalog, partner, frozen):
    key, raw = services.api_key_create(partner=partner)
    api = client_with_key(raw)

    def updates():
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/v1/plans").status_code == 200
        return sum(q["sql"].startswith("UPDATE") and "accounts_apikey" in q["sql"] for q in queries)

    assert updates() == 1
    frozen.shift(30)
    assert updates() == 0
    frozen.shift(31)
    assert updates() == 1
    key.refresh_from_db()
    assert key.last_used_at == NOW + timedelta(seconds=61)


def test_create_api_key_scopes_expiry_rotation_and_revocation(account):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key",
        "--partner",
        account.partner.name,
        "--scope",
        "events:write",
        "--expires",
        "2027-01-01T00:00:00Z",
        stdout=out,
        stderr=err,
    )
    key = services.api_key_authenticate(raw=out.getvalue().strip())
    assert key.scopes == ["events:write"] and key.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert "events:write" in err.getvalue()

    out = StringIO()
    call_command(
        "create_api_key",
        "--rotate",
        key.prefix,
        "--old-key-expires",
        "2026-11-23T00:00:00Z",
        stdout=out,
        stderr=StringIO(),
    )
    new = services.api_key_authenticate(raw=out.getvalue().strip())
    assert new.rotated_from == key and new.scopes == ["events:write"]

    call_command("create_api_key", "--revoke", new.prefix, stderr=StringIO())
    assert ApiKey.objects.get(pk=new.pk).revoked_at == NOW
    assert [k.prefix for k in selectors.api_key_list(partner=account.partner)] == [
        new.prefix,
        key.prefix,
    ]

    with pytest.raises(CommandError, match="No API key"):
        call_command("create_api_key", "--revoke", "bpk_nothere", stderr=StringIO())
    with pytest.raises(CommandError, match="offset"):
        call_command(
            "create_api_key", "--partner", "X", "--expires", "2027-01-01", stderr=StringIO()
        )
    with pytest.raises(CommandError, match="--partner"):
        call_command("create_api_key", stderr=StringIO())
