"""A merchant's way through Shopify's billing, on the stand-in: an account that pays through its
shop asks for an app subscription, the merchant approves it on Shopify's confirmation page, and
Shopify's webhooks come back into our webhook view (replayed from the stand-in's record of
them, signed by it, through Django's test client)."""

from django.test import Client, TestCase

from accounts.models import Account
from billing import shopify_billing
from billing.models import ShopifySubscription
from plans import services as plan_services

TOKEN = "shpat_flows_0123456789"


def shop_domain(slug: str) -> str:
    return f"{slug}.myshopify.com"


def open_account(stand_in, *, slug: str = "bloom", plan: str = "basic", addons=None) -> Account:
    """A Shopify-channel account with its shop, the app subscription asked for (PENDING)."""
    stand_in.shop(shop_domain(slug), TOKEN, "USD")
    account = plan_services.account_open(
        slug=slug,
        name=f"{slug.title()} Store",
        billing_email=f"billing@{slug}.example",
        currency="USD",
        plan_code=plan,
        interval="30d",
        addons=[],
        billing_channel="shopify",
        shop_domain=shop_domain(slug),
        access_token=TOKEN,
    )
    shopify_billing.shopify_subscribe(account=account, plan_code=plan, addons=addons)
    return account


def newest(account: Account) -> ShopifySubscription:
    return ShopifySubscription.objects.filter(account=account).latest("created_at", "pk")


def number(row: ShopifySubscription) -> int:
    return int(row.gid.rsplit("/", 1)[1])


def deliver(stand_in, *, topic: str | None = None, after: int = 0) -> list[int]:
    """POST the stand-in's webhooks (from index `after`) to our webhook view, as Shopify
    would; returns the answers' status codes."""
    client = Client()
    codes = []
    for delivery in stand_in.webhooks_settled()[after:]:
        if topic is not None and delivery["topic"] != topic:
            continue
        headers = {k: v for k, v in delivery["headers"].items() if k != "Content-Type"}
        # The view hands processing to a task after the commit: run it (and what it sends).
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = client.post(
                "/webhooks/shopify/",
                data=delivery["body"],
                content_type="application/json",
                headers=headers,
            )
        codes.append(response.status_code)
    return codes


def sent(stand_in) -> int:
    """How many webhooks the stand-in has sent so far (to deliver only the later ones)."""
    return len(stand_in.webhooks_settled())


def approve_and_deliver(stand_in, row: ShopifySubscription) -> str:
    """The merchant presses Approve; Shopify's webhooks arrive. Returns the return URL."""
    before = sent(stand_in)
    back = stand_in.approve(row.confirmation_url)
    deliver(stand_in, after=before)
    return back


def active_account(stand_in, **kwargs) -> Account:
    """An account whose first app subscription the merchant approved (ours started)."""
    account = open_account(stand_in, **kwargs)
    approve_and_deliver(stand_in, newest(account))
    return account
