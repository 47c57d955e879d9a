"""The Stripe adapter: the only module that imports `stripe`.

It speaks to Stripe itself in production and to localstripe (STRIPE_API_BASE) in development and
tests, through the same calls: nothing here depends on the stand-in. What the rest of the
portal sees are plain results (`ChargeResult`, `CardInfo`), never Stripe objects.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings

logger = logging.getLogger(__name__)

# Stripe answers a repeated idempotency key with the first response for 24 hours; we re-send
# within a safe margin of that, and search by metadata after it.
IDEMPOTENCY_WINDOW = timedelta(hours=23)

# Declines where trying the same card again cannot help: no automatic retry (F3).
HARD_DECLINES = frozenset(
    {
        "stolen_card",
        "lost_card",
        "pickup_card",
        "fraudulent",
        "restricted_card",
        "invalid_account",
        "card_not_supported",
        "currency_not_supported",
        "new_account_information_available",
    }
)
# Stripe's codes in words a merchant understands (F3).
REASONS = {
    "expired_card": "The card has expired. Add a valid card, then retry the payment.",
    "insufficient_funds": "The card has insufficient funds.",
    "do_not_honor": (
        "The bank declined the payment without giving a reason (do not honour). "
        "Contact your bank or use another card."
    ),
    "generic_decline": "The bank declined the payment. Contact your bank or use another card.",
    "card_declined": "The bank declined the payment. Contact your bank or use another card.",
    "incorrect_cvc": "The card's security code (CVC) is incorrect.",
    "incorrect_number": "The card number is incorrect.",
    "processing_error": "The bank could not process the payment. It will be tried again.",
    "stolen_card": "The bank declined the card (reported stolen). Use another card.",
    "lost_card": "The bank declined the card (reported lost). Use another card.",
    "pickup_card": "The bank declined the card. Use another card.",
    "fraudulent": "The bank declined the payment as suspected fraud. Use another card.",
    "restricted_card": "The card cannot be used for this payment. Use another card.",
    "payment_intent_authentication_failure": (
        "The bank's authentication (3-D Secure) failed or was cancelled."
    ),
    "authentication_required": "Your bank asks you to confirm this payment.",
    "no_payment_method": "No card is saved for this account. Add a card, then retry the payment.",
    "stripe_refused": (
        "The payment could not be sent to the bank. Our team has been told; no money was taken."
    ),
}


class GatewayError(Exception):
    """Stripe refused a request for a reason that is ours or the input's (not a decline)."""


class PaymentMethodMissing(GatewayError):
    """Stripe has no payment method by that id (a typo, or another Stripe account's)."""


@dataclass(frozen=True)
class ChargeResult:
    status: str  # succeeded | requires_action | failed | canceled | unknown
    payment_intent: str = ""
    client_secret: str = ""
    failure_code: str = ""
    failure_reason: str = ""
    is_hard_decline: bool = False
    intent_status: str = ""  # Stripe's own status of the intent, when there is one


@dataclass(frozen=True)
class CardInfo:
    stripe_id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


def _plain(value) -> dict:
    """A Stripe object (or None) as a plain dict; stripe 16 objects are not dicts."""
    if value is None:
        return {}
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def client(*, timeout: float | None = None, retries: int | None = None) -> stripe.StripeClient:
    # An explicit timeout: a hung Stripe must not hold a web request or a worker for the
    # library's default 80 s. Retries re-send with the same idempotency key.
    if retries is None:
        retries = 0 if settings.STRIPE_API_BASE else 2
    kwargs: dict[str, Any] = {
        "max_network_retries": retries,
        "http_client": stripe.new_default_http_client(
            timeout=timeout or settings.STRIPE_TIMEOUT_SECONDS
        ),
    }
    if settings.STRIPE_API_BASE:
        kwargs["base_addresses"] = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(settings.STRIPE_API_KEY, **kwargs)


def reason_for(code: str) -> str:
    return REASONS.get(code, "The payment failed. Try another card or contact your bank.")


def customer_create(*, email: str, name: str, account_slug: str) -> str:
    customer = client().v1.customers.create(
        params={"email": email, "name": name, "metadata": {"account": account_slug}}
    )
    return customer.id


def payment_method_attach(*, customer: str, payment_method: str) -> CardInfo:
    """Attach a card (from Stripe.js or a partner) to the customer and make it the default."""
    api = client().v1
    try:
        method = api.payment_methods.attach(payment_method, params={"customer": customer})
        api.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": method.id}}
        )
    except stripe.CardError as exc:
        raise GatewayError(reason_for(exc.code or "card_declined")) from exc
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise PaymentMethodMissing(f"Stripe has no payment method '{payment_method}'.") from exc
        raise GatewayError(f"Stripe refused the payment method: {exc.user_message or exc}") from exc
    card = _plain(method).get("card") or {}
    return CardInfo(
        stripe_id=method.id,
        brand=card.get("brand", ""),
        last4=card.get("last4", ""),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def setup_intent_create(*, customer: str) -> str:
    """A SetupIntent's client secret: Stripe.js collects the card, never our servers."""
    intent = client().v1.setup_intents.create(
        # The SDK's typed params follow Stripe's newest API, which renamed this key; the API
        # version of our account (and the loopback stand-in) take `payment_method_types`.
        params={"customer": customer, "payment_method_types": ["card"]},  # type: ignore[arg-type]
    )
    assert intent.client_secret is not None  # a new SetupIntent always has one
    return intent.client_secret


def setup_intent_payment_method(*, setup_intent: str) -> str:
    method = client().v1.setup_intents.retrieve(setup_intent).payment_method
    if method is None:
        # The customer left the card form before it finished: no card to save. (The page shows
        # the same words it shows for any SetupIntent it cannot use.)
        raise GatewayError("the card form did not finish.")
    # An id: the field is an object only when expanded, which we never ask for.
    return method if isinstance(method, str) else method.id


def _result(intent) -> ChargeResult:
    ids = {
        "payment_intent": intent.id,
        "client_secret": intent.client_secret,
        "intent_status": intent.status,
    }
    if intent.status == "succeeded":
        return ChargeResult("succeeded", **ids)
    if intent.status == "requires_action":
        return ChargeResult(
            "requires_action",
            failure_code="authentication_required",
            failure_reason=reason_for("authentication_required"),
            **ids,
        )
    if intent.status in ("processing", "requires_confirmation"):
        return ChargeResult("unknown", **ids)
    if intent.status == "canceled":
        return ChargeResult("canceled", **ids)
    error = _plain(intent).get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or "card_declined"
    if code == "authentication_required":
        # Real Stripe's off-session SCA answer: the intent waits for the customer.
        return ChargeResult(
            "requires_action", failure_code=code, failure_reason=reason_for(code), **ids
        )
    return ChargeResult(
        "failed",
        failure_code=code,
        failure_reason=reason_for(code),
        is_hard_decline=code in HARD_DECLINES,
        **ids,
    )


def charge_off_session(
    *,
    customer: str,
    payment_method: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    metadata: dict[str, str],
) -> ChargeResult:
    """Charge a saved card without the customer, once per idempotency key."""
    try:
        intent = client().v1.payment_intents.create(
            params={
                "amount": amount_minor,
                "currency": currency.lower(),
                "customer": customer,
                "payment_method": payment_method,
                "confirm": True,
                "off_session": True,
                # The key our API version takes (see setup_intent_create).
                "payment_method_types": ["card"],  # type: ignore[typeddict-unknown-key]
                "metadata": metadata,
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError as exc:
        error = _plain(exc.error)
        code = error.get("decline_code") or exc.code or "card_declined"
        declined = error.get("payment_intent") or {}
        if exc.code == "authentication_required":
            # Real Stripe raises for off-session SCA and leaves the intent for the customer.
            return ChargeResult(
                "requires_action",
                declined.get("id", ""),
                declined.get("client_secret", ""),
                exc.code,
                reason_for(exc.code),
                intent_status=declined.get("status", ""),
            )
        # The declined intent stays at Stripe (requires_payment_method): keep its id, so the
        # attempt can be found there. Stripe names it in the error; a stand-in that names only
        # the charge is asked which intent the charge belongs to.
        intent_id = declined.get("id") or _intent_of_charge(error.get("charge"))
        return ChargeResult("failed", intent_id, "", code, reason_for(code), code in HARD_DECLINES)
    except stripe.IdempotencyError:
        # The same key is in flight elsewhere, or was used with another body: the first
        # request decides; its answer is fetched by reconciliation.
        logger.warning("idempotency conflict on %s", idempotency_key)
        return ChargeResult("unknown")
    except (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError) as exc:
        # Stripe refused the request itself: nothing was charged. Ours to fix, not the card's.
        logger.error("Stripe refused charge %s: %s", idempotency_key, exc)
        return ChargeResult(
            "failed", failure_code="stripe_refused", failure_reason=reason_for("stripe_refused")
        )
    except stripe.StripeError:
        # Timeouts, dropped connections, 5xx, 429: the request may or may not have reached
        # Stripe, so it is never sent again blindly (reconciliation asks first).
        return ChargeResult("unknown")
    return _result(intent)


def _intent_of_charge(charge: object) -> str:
    """The PaymentIntent a declined charge belongs to ("" when Stripe cannot say now: the
    attempt is recorded without it, as before, and reconciliation still finds it by key)."""
    if not isinstance(charge, str) or not charge:
        return ""
    try:
        return str(_plain(client().v1.charges.retrieve(charge)).get("payment_intent") or "")
    except stripe.StripeError as exc:
        logger.warning("could not read charge %s: %s", charge, exc)
        return ""


def dashboard_url(*, payment_intent: str = "", customer: str = "") -> str:
    """Where an operator sees a payment (or a customer) in Stripe's dashboard: its test-mode
    pages for a test key, its live pages for a live key; "" when we do not talk to Stripe
    itself (the loopback stand-in has no dashboard) or there is no id."""
    if settings.STRIPE_API_BASE or not (payment_intent or customer):
        return ""
    live = settings.STRIPE_API_KEY.startswith(("sk_live_", "rk_live_"))
    base = "https://dashboard.stripe.com" + ("" if live else "/test")
    if payment_intent:
        return f"{base}/payments/{payment_intent}"
    return f"{base}/customers/{customer}"


def payment_intent_search(*, idempotency_key: str) -> ChargeResult | None:
    """The intent created for an attempt, found by the key in its metadata (Stripe's search
    API; None when nothing matches or search is not available, as with the stand-in)."""
    try:
        found = client().v1.payment_intents.search(
            params={"query": f"metadata['attempt']:'{idempotency_key}'", "limit": 1}
        )
    except stripe.StripeError as exc:
        logger.warning("payment intent search unavailable: %s", exc)
        return None
    intents = list(found.data)
    return _result(intents[0]) if intents else None


def payment_intent_cancel(*, payment_intent: str, idempotency_key: str) -> ChargeResult:
    """Cancel an intent that waits for the customer, so that its link can never charge. When
    Stripe refuses (the customer confirmed it a moment ago, or it is cancelled already), what
    the intent is now is the answer: a success is recorded, never lost."""
    try:
        intent = client().v1.payment_intents.cancel(
            payment_intent, options={"idempotency_key": idempotency_key}
        )
    except stripe.InvalidRequestError as exc:
        logger.info("intent %s not cancelled (%s): reading it", payment_intent, exc)
        return payment_intent_get(payment_intent=payment_intent)
    except stripe.StripeError as exc:
        # Lost answer: the attempt stays claimed and reconciliation reads the intent later.
        logger.warning("cancelling %s: no answer (%s)", payment_intent, exc)
        return ChargeResult("unknown", payment_intent=payment_intent)
    return _result(intent)


def payment_intent_get(*, payment_intent: str) -> ChargeResult:
    try:
        return _result(client().v1.payment_intents.retrieve(payment_intent))
    except stripe.StripeError as exc:
        logger.warning("could not read %s: %s", payment_intent, exc)
        return ChargeResult("unknown", payment_intent=payment_intent)


@dataclass(frozen=True)
class StripePayment:
    """A PaymentIntent as the ledger comparison sees it."""

    payment_intent: str
    amount_minor: int
    currency: str
    status: str  # Stripe's own status
    attempt_key: str  # our idempotency key, from the intent's metadata
    invoice: str  # our invoice number, from the intent's metadata
    created: datetime
    outcome: str  # what our ledger should say of it: ChargeResult.status


@dataclass(frozen=True)
class StripeRefund:
    refund: str
    payment_intent: str
    amount_minor: int
    currency: str
    status: str
    created: datetime


def _payment(intent) -> StripePayment:
    metadata = _plain(intent).get("metadata") or {}
    return StripePayment(
        payment_intent=intent.id,
        amount_minor=int(intent.amount),
        currency=str(intent.currency).upper(),
        status=intent.status,
        attempt_key=str(metadata.get("attempt", "")),
        invoice=str(metadata.get("invoice", "")),
        created=datetime.fromtimestamp(int(intent.created), tz=UTC),
        outcome=_result(intent).status,
    )


def _created_filter(
    since: datetime, until: datetime
) -> stripe.params.PaymentIntentListParamsCreated | None:
    # Stripe filters by creation time on its side; the stand-in (STRIPE_API_BASE) refuses the
    # parameter, so there the whole list is read. Both are filtered again here.
    if settings.STRIPE_API_BASE:
        return None
    return {"gte": int(since.timestamp()), "lt": int(until.timestamp())}


def payment_intents_list(*, since: datetime, until: datetime) -> list[StripePayment]:
    """Every PaymentIntent created in [since, until). Raises GatewayError when Stripe cannot
    be read (a comparison with half a list would report false differences)."""
    params: stripe.params.PaymentIntentListParams = {"limit": 100}
    if created := _created_filter(since, until):
        params["created"] = created
    try:
        found = client().v1.payment_intents.list(params=params).auto_paging_iter()
        payments = [_payment(intent) for intent in found]
    except stripe.StripeError as exc:
        raise GatewayError(f"Could not list Stripe's payment intents: {exc}") from exc
    return [p for p in payments if since <= p.created < until]


def payment_intent_record(*, payment_intent: str) -> StripePayment | None:
    """One PaymentIntent for the ledger comparison; None when Stripe has no such intent."""
    try:
        return _payment(client().v1.payment_intents.retrieve(payment_intent))
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise GatewayError(f"Could not read {payment_intent}: {exc}") from exc
    except stripe.StripeError as exc:
        raise GatewayError(f"Could not read {payment_intent}: {exc}") from exc


def refunds_list(*, since: datetime, until: datetime) -> list[StripeRefund]:
    """Every refund created in [since, until) (raises GatewayError like the intents' list)."""
    params: stripe.params.RefundListParams = {"limit": 100}
    if created := _created_filter(since, until):
        params["created"] = created
    try:
        found = list(client().v1.refunds.list(params=params).auto_paging_iter())
    except stripe.StripeError as exc:
        raise GatewayError(f"Could not list Stripe's refunds: {exc}") from exc
    refunds = [
        StripeRefund(
            refund=refund.id,
            payment_intent=str(_plain(refund).get("payment_intent") or ""),
            amount_minor=int(refund.amount),
            currency=str(refund.currency).upper(),
            status=str(refund.status),
            created=datetime.fromtimestamp(int(refund.created), tz=UTC),
        )
        for refund in found
    ]
    return [r for r in refunds if since <= r.created < until]


@dataclass(frozen=True)
class RefundResult:
    """What Stripe says of a refund, in our words."""

    status: str  # pending | succeeded | failed | canceled | unknown
    refund: str = ""  # Stripe's refund id, when Stripe gave one
    failure_reason: str = ""
    metadata: dict[str, str] | None = None


# Stripe's refund failure codes in words (what an operator and a merchant read).
REFUND_REASONS = {
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "expired_or_canceled_card": "the card has expired or was cancelled",
    "charge_for_pending_refund_disputed": "the charge is disputed",
    "insufficient_funds": "our Stripe balance could not cover it",
    "declined": "the card's bank declined it",
    "merchant_request": "it was cancelled",
    "unknown": "the card's bank returned it without a reason",
}


def _refund_result(refund) -> RefundResult:
    data = _plain(refund)
    status = str(data.get("status") or "")
    if status == "requires_action":
        status = "pending"  # waits for something at Stripe's side, not for us
    reason = ""
    if status in ("failed", "canceled"):
        code = str(data.get("failure_reason") or data.get("cancellation_reason") or "unknown")
        reason = f"The refund did not reach the card: {REFUND_REASONS.get(code, code)}."
    if status not in ("pending", "succeeded", "failed", "canceled"):
        status = "unknown"
    metadata = {str(k): str(v) for k, v in (data.get("metadata") or {}).items()}
    return RefundResult(status, str(data.get("id") or ""), reason, metadata)


def refund_create(
    *, payment_intent: str, amount_minor: int, idempotency_key: str, metadata: dict[str, str]
) -> RefundResult:
    """Give `amount_minor` of a charge back to its card, once per idempotency key."""
    try:
        refund = client().v1.refunds.create(
            params={"payment_intent": payment_intent, "amount": amount_minor, "metadata": metadata},
            options={"idempotency_key": idempotency_key},
        )
    except stripe.IdempotencyError:
        # The same key is in flight elsewhere: the first request decides (reconciliation).
        logger.warning("idempotency conflict on %s", idempotency_key)
        return RefundResult("unknown")
    except (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError) as exc:
        # Stripe refused the request itself (more than is refundable, a disputed charge):
        # nothing left the balance. The caller makes the amount account credit.
        logger.error("Stripe refused refund %s: %s", idempotency_key, exc)
        words = getattr(exc, "user_message", None) or str(exc)
        return RefundResult("failed", failure_reason=f"Stripe refused the refund: {words}"[:300])
    except stripe.StripeError:
        # A timeout, a dropped connection, 5xx, 429: Stripe may have refunded. Never sent
        # again blindly: reconciliation lists the charge's refunds first.
        return RefundResult("unknown")
    return _refund_result(refund)


def refund_get(*, refund: str) -> RefundResult:
    try:
        return _refund_result(client().v1.refunds.retrieve(refund))
    except stripe.StripeError as exc:
        logger.warning("could not read refund %s: %s", refund, exc)
        return RefundResult("unknown", refund=refund)


def refund_find(*, payment_intent: str, refund_row: str) -> RefundResult | None:
    """The refund we made of this charge for our row `refund_row` (by its metadata), None when
    Stripe holds none. Raises GatewayError when Stripe cannot be read: "none" must be true
    before a refund is sent again."""
    try:
        found = (
            client()
            .v1.refunds.list(params={"payment_intent": payment_intent, "limit": 100})
            .auto_paging_iter()
        )
        results = [_refund_result(refund) for refund in found]
    except stripe.StripeError as exc:
        raise GatewayError(f"Could not list the refunds of {payment_intent}: {exc}") from exc
    return next((r for r in results if (r.metadata or {}).get("refund") == refund_row), None)


def refundable_minor(*, payment_intent: str) -> int:
    """What Stripe says is still refundable on a charge: its amount less what was refunded.
    Raises GatewayError when Stripe cannot say (no refund is promised on a guess)."""
    try:
        intent = client().v1.payment_intents.retrieve(
            payment_intent, params={"expand": ["latest_charge"]}
        )
    except stripe.StripeError as exc:
        raise GatewayError(f"Could not read {payment_intent}: {exc}") from exc
    charge = _plain(intent).get("latest_charge")
    if not isinstance(charge, dict):
        raise GatewayError(f"Stripe names no charge for {payment_intent}.")
    if charge.get("status") != "succeeded":
        return 0
    return max(int(charge.get("amount") or 0) - int(charge.get("amount_refunded") or 0), 0)


@dataclass(frozen=True)
class DisputeState:
    """A dispute as Stripe holds it now (`charge.dispute.*` are read back through this)."""

    dispute: str
    payment_intent: str
    charge: str
    status: str
    reason: str
    amount_minor: int
    currency: str
    fee_minor: int  # the dispute fee less any of it given back (balance transactions)
    evidence_due_by: datetime | None
    is_charge_refundable: bool
    funds_withdrawn_at: datetime | None
    funds_reinstated_at: datetime | None
    created_at: datetime | None
    raw: dict


def _when(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if isinstance(value, int | float) else None


def dispute_state(data: dict) -> DisputeState:
    """Stripe's dispute object in our terms. The fee and the funds' movements come from its
    balance transactions: the withdrawal is the one taking money (negative amount), the
    reinstatement the one giving it back; each carries its part of the fee."""
    moves = [m for m in data.get("balance_transactions") or () if isinstance(m, dict)]
    withdrawn = [m for m in moves if int(m.get("amount") or 0) < 0]
    reinstated = [m for m in moves if int(m.get("amount") or 0) > 0]
    evidence = data.get("evidence_details") or {}
    charge = data.get("charge")
    intent = data.get("payment_intent")
    return DisputeState(
        dispute=str(data.get("id") or ""),
        payment_intent=str((intent or {}).get("id") if isinstance(intent, dict) else intent or ""),
        charge=str((charge or {}).get("id") if isinstance(charge, dict) else charge or ""),
        status=str(data.get("status") or ""),
        reason=str(data.get("reason") or "")[:40],
        amount_minor=int(data.get("amount") or 0),
        currency=str(data.get("currency") or "").upper(),
        fee_minor=sum(int(m.get("fee") or 0) for m in moves),
        evidence_due_by=_when(evidence.get("due_by")) if isinstance(evidence, dict) else None,
        is_charge_refundable=bool(data.get("is_charge_refundable")),
        funds_withdrawn_at=_when(withdrawn[0].get("created")) if withdrawn else None,
        funds_reinstated_at=_when(reinstated[0].get("created")) if reinstated else None,
        created_at=_when(data.get("created")),
        raw=data,
    )


def dispute_get(*, dispute: str) -> DisputeState:
    """The dispute as Stripe holds it now. Raises GatewayError when Stripe cannot say (the
    webhook that asked is processed again later)."""
    try:
        found = client().v1.disputes.retrieve(dispute)
    except stripe.StripeError as exc:
        raise GatewayError(f"Could not read dispute {dispute}: {exc}") from exc
    return dispute_state(_plain(found))


def webhook_event(*, payload: bytes, signature: str, secret: str, tolerance: int) -> dict:
    """Verify a webhook on its raw body; raises ValueError for a bad or stale signature."""
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
        event = json.loads(text)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(event, dict):  # validly signed but not an event: a 400, not a crash
        raise ValueError("The body is not a Stripe event object.")
    return event


def reachable() -> bool:
    """Whether Stripe answers an authenticated request now (for readiness checks): the
    cheapest read there is, on a short timeout so a probe never hangs on Stripe."""
    try:
        client(timeout=3, retries=0).v1.balance.retrieve()
    except stripe.StripeError:
        return False
    return True
