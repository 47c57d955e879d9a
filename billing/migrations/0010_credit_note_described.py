"""Every credit note has its words for the customer (backfilled by 0009). A migration of its
own: PostgreSQL refuses to alter a table whose rows the same transaction just updated."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0009_credit_note_description"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=~models.Q(kind="credit_note") | ~models.Q(description=""),
                name="invoice_credit_note_described",
            ),
        ),
    ]
