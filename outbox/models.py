"""Outbound webhooks to partners: endpoints, the outbox of events, and their deliveries.

An event row is written in the same transaction as the change that causes it (an invoice
issued, a subscription suspended...), so a change is never announced without happening nor
happens without being announced. Delivery is a separate, retried step (outbox/delivery.py).
"""

from django.db import models
from django.db.models import Q

from accounts.models import Account, Partner


class EventType(models.TextChoices):
    INVOICE_FINALIZED = "invoice.finalized"
    INVOICE_PAID = "invoice.paid"
    INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
    INVOICE_REQUIRES_CONFIRMATION = "invoice.requires_confirmation"
    INVOICE_DISPUTE_OPENED = "invoice.dispute_opened"
    INVOICE_DISPUTE_CLOSED = "invoice.dispute_closed"
    INVOICE_REFUNDED = "invoice.refunded"
    INVOICE_REFUND_FAILED = "invoice.refund_failed"
    CREDIT_NOTE_ISSUED = "credit_note.issued"
    SUBSCRIPTION_CHANGED = "subscription.changed"
    SUBSCRIPTION_SUSPENDED = "subscription.suspended"
    SUBSCRIPTION_REACTIVATED = "subscription.reactivated"
    SUBSCRIPTION_ENDED = "subscription.ended"
    USAGE_THRESHOLD_REACHED = "usage.threshold_reached"
    USAGE_ANOMALY_DETECTED = "usage.anomaly_detected"
    USAGE_ANOMALY_RESOLVED = "usage.anomaly_resolved"
    ENTITLEMENT_CHANGED = "entitlement.changed"
    USAGE_DISPUTE_CREATED = "usage_dispute.created"
    USAGE_DISPUTE_RESOLVED = "usage_dispute.resolved"


class Endpoint(models.Model):
    """A partner's URL that receives every event of the partner's accounts, signed with its
    own secret. Deleting it stops new deliveries; its log stays readable."""

    public_id = models.CharField(max_length=40, unique=True)
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Kept in clear: it signs every delivery, so it must be readable (as Stripe keeps its own).
    secret = models.CharField(max_length=80)
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["partner", "deleted_at"], name="endpoint_partner_live")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.url}"


class AccountSequence(models.Model):
    """The last event number given to an account: events of one account are numbered 1, 2,
    3... with no gap, so a partner orders them and sees one missing."""

    account = models.OneToOneField(
        Account, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.last}"


class Event(models.Model):
    public_id = models.CharField(max_length=40, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    sequence = models.BigIntegerField()
    type = models.CharField(max_length=40, choices=EventType.choices)
    data = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "sequence"], name="event_sequence_once"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type} #{self.sequence}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # not sent yet, or failed and waiting for its next attempt
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # gave up after 3 days of retries
    CANCELED = "canceled"  # the endpoint was deleted before it got through


class Delivery(models.Model):
    """One event to one endpoint. A replay is a new delivery of the same event."""

    Status = DeliveryStatus

    public_id = models.CharField(max_length=40, unique=True)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the event: the delivery order is per (endpoint, account, sequence).
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    sequence = models.BigIntegerField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_due",
            ),
            models.Index(fields=["endpoint", "account", "sequence"], name="delivery_order"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"
