"""Read paths of billing, scoped by the requesting principal."""

from django.db.models import QuerySet

from accounts.errors import NotFound
from accounts.models import Account
from accounts.principals import accounts_for

from .models import Invoice


def invoice_list(*, account: Account) -> QuerySet[Invoice]:
    return Invoice.objects.filter(account=account).prefetch_related("lines")


def invoice_get(*, principal, invoice_id: int) -> Invoice:
    """The invoice if the principal reaches its account; 404 otherwise (no existence leak)."""
    invoice = (
        Invoice.objects.filter(pk=invoice_id, account__in=accounts_for(principal))
        .select_related("account", "credited_invoice")
        .prefetch_related("lines", "status_changes")
        .first()
    )
    if invoice is None:
        raise NotFound(f"No invoice {invoice_id}.")
    return invoice
