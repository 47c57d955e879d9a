"""A credit note's words for the customer (Invoice.description), apart from the operator's
reason; held reasons without the rule id the merchant read in them."""

from django.db import migrations, models


def backfill_descriptions(apps, schema_editor) -> None:
    """Credit notes issued before the field existed printed the words of their one line: those
    words are what the customer got, so they become its description."""
    Invoice = apps.get_model("billing", "Invoice")
    InvoiceLine = apps.get_model("billing", "InvoiceLine")
    notes = Invoice.objects.filter(kind="credit_note", description="")
    for note in notes.iterator():
        line = InvoiceLine.objects.filter(invoice=note).order_by("position").first()
        words = (line.description if line else "") or f"Credit on invoice {note.pk}"
        Invoice.objects.filter(pk=note.pk).update(description=words[:300])


def held_reasons_in_words(apps, schema_editor) -> None:
    """The spending cap's held reason ended with " (P8)", shown to merchants as is: the rule id
    stays in the console's and the admin's labels, not in the customer's sentence."""
    Dunning = apps.get_model("billing", "Dunning")
    for dunning in Dunning.objects.filter(held_reason__endswith=" (P8)."):
        dunning.held_reason = dunning.held_reason.removesuffix(" (P8).") + "."
        dunning.save(update_fields=["held_reason"])


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0008_credituse"),
    ]

    operations = [
        migrations.AddField(
            model_name="invoice",
            name="description",
            field=models.CharField(
                blank=True,
                help_text="A credit note: what it is for, in the customer's words.",
                max_length=300,
            ),
        ),
        migrations.RunPython(backfill_descriptions, migrations.RunPython.noop),
        migrations.RunPython(held_reasons_in_words, migrations.RunPython.noop),
    ]
