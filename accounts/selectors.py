"""Read paths for tenants. Every function here is scoped by a principal or an account."""

from django.db.models import QuerySet

from .errors import NotFound
from .models import Account, Integration
from .principals import accounts_for


def account_get(*, principal, slug: str) -> Account:
    """The account `slug` if the principal may reach it; 404 otherwise (no existence leak)."""
    account = accounts_for(principal).filter(slug=slug).select_related("partner").first()
    if account is None:
        raise NotFound(f"No account '{slug}'.")
    return account


def account_list(*, principal) -> QuerySet[Account]:
    return accounts_for(principal).order_by("-created_at", "-pk")


def account_integration_count(*, account: Account) -> int:
    """P5: every active integration counts once: each store connection and each channel of it.

    store_create() makes the store's own integration, so 2 stores each with chat, email and
    social count 2 + 2 × 3 = 8.
    """
    return Integration.objects.filter(account=account, is_active=True).count()
