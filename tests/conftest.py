"""Shared fixtures: the catalog, the three personas, and API clients holding keys."""

import os
from datetime import UTC, datetime

import celery
import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Membership
from billing_portal.celery import app as celery_app
from plans import services as plan_services
from plans.catalog import catalog_load
from plans.selectors import tax_rate_tables_forget

T0 = datetime(2026, 11, 1, tzinfo=UTC)

pytest_plugins = ["tests.clock"]


def redis_url_of_worker(url: str, worker: str | None) -> str:
    """The Redis database a pytest-xdist worker uses: the one `url` names for gw0 (and without
    xdist), then one down for each further worker (gw1 on 14 when gw0 is on 15), so that two
    workers never flush or read each other's keys. pytest-django gives each worker its own
    test database the same way (a `_gw0` suffix)."""
    if not worker:
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - int(worker.removeprefix('gw'))) % 16}"


# Test modules read TEST_REDIS_URL when they are imported, which is after this conftest.
os.environ["TEST_REDIS_URL"] = redis_url_of_worker(
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PYTEST_XDIST_WORKER"),
)


# django-axes checks every authenticate() against the request it came with and refuses a call
# without one, which Client.login() makes: tests log in as a browser on loopback would, counted
# (and locked out) like one. force_login() skips authentication and needs nothing.
_client_login = Client.login


def _login_with_a_request(self, **credentials):
    credentials.setdefault("request", RequestFactory().post("/login/"))
    return _client_login(self, **credentials)


Client.login = _login_with_a_request


# The suite's seller by default: a US company registered for sales tax nowhere. Its buyers (who
# mostly give no country) owe it no tax, so the thousands of pricing tests read the amounts the
# rule book gives. Tax tests name their seller with the `eu_seller` fixture or
# their own settings.
US_SELLER = {
    "TAX_SELLER_LEGAL_NAME": "Helpdesk Billing Inc.",
    "TAX_SELLER_ADDRESS": ["1 Example Street", "San Francisco, CA 94105", "United States"],
    "TAX_SELLER_COUNTRY": "US",
    "TAX_SELLER_VAT_ID": "",
    "TAX_SELLER_OSS_REGISTERED": False,
    "TAX_SELLER_US_STATES": [],
}


@pytest.fixture(autouse=True)
def _us_seller(settings):
    for name, value in US_SELLER.items():
        setattr(settings, name, value)
    # Each test reads the rate table its own transaction holds, not one an earlier test
    # loaded (and rolled back) and this process kept for a minute.
    tax_rate_tables_forget()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Django's PBKDF2 takes 0.24 s a password here by design; a test user and each login paid
    it, 13 % of the suite. Tests of passwords check what they accept and refuse, not the hash."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _portal_celery_app_stays_current():
    """Shared tasks go through Celery's current app: a test that made another one current (a
    `Celery(...)` built with its default set_as_current) would send every later test's tasks
    to that app's broker instead of running them in-process, and which tests failed would
    depend on the order they ran in."""
    yield
    assert celery.current_app._get_current_object() is celery_app, "another Celery app is current"


@pytest.fixture(autouse=True)
def _vies_offline(settings):
    """VIES is never asked on the internet: without the `vies_standin` fixture, a check (a
    saved VAT id's, after the commit) finds a closed loopback port, i.e. VIES down."""
    settings.VIES_API_URL = "http://127.0.0.1:9"
    settings.ECB_RATES_URL = "http://127.0.0.1:9/ecb/eurofxref-daily.xml"  # nor the ECB


@pytest.fixture
def eu_seller(settings):
    """The demo's seller: a French company registered for OSS and for sales tax in WA."""
    settings.TAX_SELLER_LEGAL_NAME = "Helpdesk Billing SAS"
    settings.TAX_SELLER_ADDRESS = ["1 rue de l'Exemple", "75002 Paris", "France"]
    settings.TAX_SELLER_COUNTRY = "FR"
    settings.TAX_SELLER_VAT_ID = "FR11123456782"
    settings.TAX_SELLER_OSS_REGISTERED = True
    settings.TAX_SELLER_US_STATES = ["WA"]
    return settings


@pytest.fixture
def catalog(db):
    catalog_load()


@pytest.fixture
def partner(db):
    return account_services.partner_get_or_create(name="Acme Partners")


@pytest.fixture
def make_account(catalog, partner):
    """Open an account on a plan (Basic, monthly by default) owned by the partner."""

    def make(slug="shop", plan="basic", interval="month", addons=(), period_start=None, **extra):
        return plan_services.account_open(
            slug=slug,
            name=slug.title(),
            billing_email=f"billing@{slug}.example",
            currency=extra.pop("currency", "USD"),
            plan_code=plan,
            interval=interval,
            addons=[plan_services.AddOnChoice(addon=a, tier=t) for a, t in addons],
            partner=extra.pop("partner", partner),
            period_start=period_start,
            **extra,
        )

    return make


@pytest.fixture
def account(make_account):
    return make_account()


@pytest.fixture
def owner(account, django_user_model):
    """A member who manages billing."""
    user = django_user_model.objects.create_user("owner@shop.example", password="pw-owner-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def teammate(account, django_user_model):
    """A member without billing rights."""
    user = django_user_model.objects.create_user("agent@shop.example", password="pw-agent-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.AGENT)
    return user


@pytest.fixture
def outsider(make_account, django_user_model):
    """The owner of another account."""
    other = make_account(slug="elsewhere")
    user = django_user_model.objects.create_user("owner@elsewhere.example", password="pw-out-123")
    Membership.objects.create(user=user, account=other, role=Membership.Role.OWNER)
    return user


def client_with_key(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def partner_api(partner) -> APIClient:
    """A client holding a partner key (reaches every account of the partner)."""
    _, raw = account_services.api_key_create(partner=partner, name="tests")
    return client_with_key(raw)


@pytest.fixture
def account_api(account) -> APIClient:
    """A client holding an account key for `account` only."""
    _, raw = account_services.api_key_create(partner=account.partner, account=account)
    return client_with_key(raw)


@pytest.fixture
def other_partner_api(db) -> APIClient:
    other = account_services.partner_get_or_create(name="Rival Partners")
    _, raw = account_services.api_key_create(partner=other)
    return client_with_key(raw)


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory):
    from tests import stripe_standin
    from tests.stripe_proxy import IdempotencyProxy

    process, stand_in = stripe_standin.start()
    stand_in.proxy = IdempotencyProxy(stand_in.url)
    yield stand_in
    stand_in.proxy.close()
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def stripe_standin(stripe_server, settings):
    """Stripe calls go to the loopback stand-in, empty at the start of each test, through a
    proxy that keeps Stripe's idempotency-key behaviour (the stand-in ignores keys)."""
    settings.STRIPE_API_BASE = stripe_server.proxy.url
    stripe_server.proxy.reset()
    settings.STRIPE_API_KEY = "sk_test_standin"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_secret"
    settings.STRIPE_JS_URL = f"{stripe_server.url}/js.stripe.com/v3/"
    stripe_server.flush()
    return stripe_server


@pytest.fixture(scope="session")
def shopify_server():
    from tests import shopify_standin

    process, stand_in = shopify_standin.start()
    yield stand_in
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def shopify_standin(shopify_server, settings):
    """Shopify's Admin API is the loopback stand-in, empty at the start of each test; its
    webhooks are signed with the secret our settings verify them with. Its clock starts at this
    process' now (moved by --clock too); a test that travels further moves it itself."""
    shopify_server.reset()
    shopify_server.clock(now=datetime.now(UTC))
    settings.SHOPIFY_ADMIN_URL = shopify_server.admin_url
    settings.SHOPIFY_API_SECRET = shopify_server.api_secret
    return shopify_server


@pytest.fixture(scope="session")
def vies_server():
    from tests import vies_standin

    process, stand_in = vies_standin.start()
    yield stand_in
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def vies_standin(vies_server, settings):
    """VIES calls go to the loopback stand-in (scripts/vies_standin.py), reset for each test."""
    settings.VIES_API_URL = vies_server.url
    settings.ECB_RATES_URL = vies_server.ecb_url  # the same stand-in serves ECB's file
    vies_server.reset()
    return vies_server
