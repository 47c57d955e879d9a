"""P5: how integrations are counted."""

from accounts import services
from accounts.models import Integration
from accounts.selectors import account_integration_count


def test_P5_two_stores_with_chat_email_and_social_count_eight(account):
    for name in ("one.myshopify.com", "two.myshopify.com"):
        store = services.store_create(account=account, platform="shopify", name=name)
        for kind in ("chat", "email", "social"):
            services.integration_add(account=account, kind=kind, name=f"{name} {kind}", store=store)
    assert account_integration_count(account=account) == 8


def test_P5_inactive_integrations_do_not_count(account):
    store = services.store_create(account=account, platform="magento", name="m2")
    services.integration_add(account=account, kind="email", name="support@", store=store)
    Integration.objects.filter(kind="email").update(is_active=False)
    assert account_integration_count(account=account) == 1
