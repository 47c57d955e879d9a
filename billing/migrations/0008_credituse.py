"""CreditUse: account credit spent on an invoice, as a ledger row; backfilled from the lines
written before it existed."""

import re

import django.db.models.deletion
from django.db import migrations, models

# Before CreditUse, the only record of which credit an invoice line spent was the line's words,
# as invoicing._apply_credits wrote them ("Credit from <source number>: <description>"). This
# backfill reads them once, so that nothing else ever has to: it is the one place left that
# parses a description, and it runs on lines written by that code only.
_OLD_CREDIT_USE = re.compile(r"^Credit from (?P<source>[^:\s]+): ")


def backfill_credit_uses(apps, schema_editor) -> int:
    """One CreditUse per old credit line on an invoice whose words name an account credit of
    the same account and currency; returns how many were written. Credit notes are left out
    (their credit lines are an operator's words, never a use of credit), and so are lines that
    already have their use, so running it twice writes nothing more."""
    AccountCredit = apps.get_model("billing", "AccountCredit")
    CreditUse = apps.get_model("billing", "CreditUse")
    InvoiceLine = apps.get_model("billing", "InvoiceLine")
    lines = list(
        InvoiceLine.objects.filter(
            kind="credit",
            amount_minor__lt=0,
            description__startswith="Credit from ",
            invoice__kind="invoice",
            credit_use__isnull=True,
        )
        .exclude(invoice__status="draft")
        .values_list(
            "pk",
            "invoice_id",
            "invoice__account_id",
            "invoice__currency",
            "invoice__issued_at",
            "description",
            "amount_minor",
        )
        .order_by("pk")
    )
    if not lines:
        return 0
    # One credit per source document (a credit note, or an invoice that carried a negative
    # total); the oldest wins should an account ever hold two.
    credits: dict[tuple[int, str, str], int] = {}
    for pk, account_id, currency, number in (
        AccountCredit.objects.filter(account_id__in={line[2] for line in lines})
        .order_by("-created_at", "-pk")
        .values_list("pk", "account_id", "currency", "source__number")
    ):
        credits[(account_id, currency, number)] = pk
    uses = []
    for pk, invoice_id, account_id, currency, issued_at, description, amount in lines:
        match = _OLD_CREDIT_USE.match(description)
        credit_id = match and credits.get((account_id, currency, match["source"]))
        if credit_id:
            uses.append(
                CreditUse(
                    credit_id=credit_id,
                    invoice_id=invoice_id,
                    line_id=pk,
                    amount_minor=-amount,
                    created_at=issued_at,
                )
            )
    CreditUse.objects.bulk_create(uses, batch_size=2000)
    return len(uses)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_one_live_payment"),
    ]

    operations = [
        migrations.CreateModel(
            name="CreditUse",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("amount_minor", models.BigIntegerField()),
                ("created_at", models.DateTimeField()),
                (
                    "credit",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="uses",
                        to="billing.accountcredit",
                    ),
                ),
                (
                    "invoice",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="credit_uses",
                        to="billing.invoice",
                    ),
                ),
                (
                    "line",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="credit_use",
                        to="billing.invoiceline",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("amount_minor__gt", 0)), name="credituse_positive"
                    )
                ],
            },
        ),
        # The uses are written with the table; undoing drops the table, so nothing to undo here.
        migrations.RunPython(backfill_credit_uses, migrations.RunPython.noop),
    ]
