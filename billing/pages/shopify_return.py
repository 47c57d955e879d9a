"""The page Shopify sends the merchant back to after its approval page (the returnUrl): it asks
Shopify what became of the subscription and says so on the Billing & Usage page. The redirect
alone proves nothing: only Shopify's answer starts or changes anything."""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse

from accounts.errors import DomainError
from plans.money import format_money

from ..models import ShopifyStatus, ShopifySubscription
from ..shopify_billing import shopify_return
from .access import billing_page

_WORDS = {
    ShopifyStatus.ACTIVE: (messages.SUCCESS, "Shopify approved your subscription: it is active."),
    ShopifyStatus.ACCEPTED: (
        messages.SUCCESS,
        "Shopify approved the change: it applies at the end of this 30-day cycle.",
    ),
    ShopifyStatus.PENDING: (
        messages.INFO,
        "Shopify has not approved the subscription yet: approve it in Shopify to start.",
    ),
    ShopifyStatus.DECLINED: (
        messages.WARNING,
        "The subscription was declined in Shopify: nothing changed. You can ask for it again.",
    ),
    ShopifyStatus.EXPIRED: (
        messages.WARNING,
        "The approval link expired (two days): ask for the subscription again.",
    ),
}


@billing_page(methods=("GET",))
def shopify_returned(request, access):
    overview = reverse("billing:overview", kwargs={"slug": access.account.slug})
    # Shopify sends the merchant back here after approving a higher cap too (same subscription,
    # same address): what was asked before the return tells the two approvals apart.
    before = (
        ShopifySubscription.objects.filter(account=access.account)
        .values("pk", "status", "capped_amount_minor", "cap_requested_minor")
        .order_by("-pk")
    )
    asked = {row["pk"]: row for row in before}
    try:
        row = shopify_return(account=access.account, charge_id=request.GET.get("charge_id"))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(overview)
    if row is None:
        messages.info(request, "No Shopify subscription is waiting for approval.")
        return redirect(overview)
    was = asked.get(row.pk)
    if was and was["status"] == ShopifyStatus.ACTIVE and row.status == ShopifyStatus.ACTIVE:
        cap = format_money(row.capped_amount_minor, row.currency)
        if row.capped_amount_minor > was["capped_amount_minor"]:
            words = (
                f"Shopify approved the higher cap: {cap} per 30 days. Usage held over the old "
                "cap is posted to Shopify now."
            )
            messages.success(request, words)
        elif was["cap_requested_minor"]:
            messages.info(request, f"The higher cap is not approved yet: the cap stays {cap}.")
        else:
            # Shopify's webhook may have activated it while the merchant was on their way
            # back (it often arrives first): the merchant just approved, and reads so.
            messages.success(request, _WORDS[ShopifyStatus.ACTIVE][1])
        return redirect(overview)
    level, words = _WORDS.get(
        row.status, (messages.INFO, f"Shopify says the subscription is {row.get_status_display()}.")
    )
    messages.add_message(request, level, words)
    return redirect(overview)
