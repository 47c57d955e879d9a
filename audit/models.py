"""The audit log: every state change of invoices, payments, subscriptions and entitlements,
every email a billing flow sends, and every operator action.

Append-only. On PostgreSQL a trigger refuses UPDATE and DELETE on the table (migration 0001),
so not even a bug, a shell session or the admin can rewrite history; the admin shows it
read-only everywhere. The actor is kept as a plain id and a label rather than a foreign key:
deleting a user must never need to touch (update) the rows that name them.
"""

from django.db import models


class Source(models.TextChoices):
    SYSTEM = "system"  # schedules, webhooks, closing: no person acted
    MERCHANT = "merchant"  # an account's owner or admin, on the Billing & Usage pages
    PARTNER = "partner"  # a partner, through the API
    OPERATOR = "operator"  # a billing operator, in the console


class AuditEntry(models.Model):
    Source = Source

    at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.SYSTEM)
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="The user, if any.")
    actor = models.CharField(max_length=150, blank=True, help_text="Who, as shown to people.")
    action = models.CharField(max_length=40, help_text="e.g. invoice.status, operator.void")
    object_type = models.CharField(max_length=30)
    object_id = models.BigIntegerField()
    object_label = models.CharField(max_length=100, blank=True, help_text="e.g. the number.")
    account_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]
        permissions = [("use_console", "Can use the billing operator console")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.object_type} {self.object_label}"
