"""API keys: hashed at rest, found by prefix, shown once, revocable."""

from io import StringIO

from django.core.management import call_command
from django.db import connection

from accounts import api_keys, services
from accounts.models import ApiKey
from tests.conftest import client_with_key


def test_raw_key_is_not_stored_anywhere(partner):
    key, raw = services.api_key_create(partner=partner)
    secret = raw.rpartition("_")[2]
    assert key.key_hash == api_keys.hash_key(raw) != raw
    with connection.cursor() as cursor:
        cursor.execute("SELECT prefix, key_hash, name FROM accounts_apikey")
        stored = " ".join(str(v) for row in cursor.fetchall() for v in row)
    assert raw not in stored and secret not in stored
    assert key.prefix in stored  # only the visible prefix is kept in clear


def test_prefix_lookup_finds_the_key_and_rejects_a_tampered_secret(partner):
    key, raw = services.api_key_create(partner=partner)
    assert api_keys.prefix_of(raw) == key.prefix
    assert services.api_key_authenticate(raw=raw) == key
    tampered = raw[:-1] + ("a" if raw[-1] != "a" else "b")
    assert services.api_key_authenticate(raw=tampered) is None
    assert services.api_key_authenticate(raw="not-a-key") is None


def test_last_used_is_recorded(partner):
    key, raw = services.api_key_create(partner=partner)
    assert key.last_used_at is None
    services.api_key_authenticate(raw=raw)
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_revoked_key_is_refused_by_the_api(catalog, partner):
    key, raw = services.api_key_create(partner=partner)
    client = client_with_key(raw)
    assert client.get("/api/v1/plans").status_code == 200
    services.api_key_revoke(key=key)
    response = client.get("/api/v1/plans")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_create_api_key_command_prints_the_key_once_and_creates_the_partner(db):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "--partner", "Newco", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get()
    assert key.partner.name == "Newco" and key.account is None
    assert services.api_key_authenticate(raw=raw) == key
    assert "not shown again" in err.getvalue()


def test_create_api_key_command_scopes_a_key_to_an_account(account):
    out = StringIO()
    call_command(
        "create_api_key",
        "--partner",
        account.partner.name,
        "--account",
        account.slug,
        stdout=out,
        stderr=StringIO(),
    )
    key = services.api_key_authenticate(raw=out.getvalue().strip())
    assert key.account == account


def test_missing_or_malformed_authorization_is_a_clear_401(catalog):
    from rest_framework.test import APIClient

    client = APIClient()
    assert client.get("/api/v1/plans").json()["error"]["code"] == "unauthenticated"
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    response = client.get("/api/v1/plans")
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]["message"]
