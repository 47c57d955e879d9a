"""Each account's final units per usage period as last counted, and whether they may have changed
since (metering.models.PeriodTally): what lets a close skip counting again the earlier periods
nothing changed in. Empty at first: a close counts a period without a tally, and writes it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0008_ingest_keys_unchecked"),
    ]

    operations = [
        migrations.CreateModel(
            name="PeriodTally",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "account_id",
                        "period_start",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("account_id", models.BigIntegerField()),
                ("period_start", models.DateTimeField()),
                (
                    "units",
                    models.JSONField(
                        help_text="Final units per meter; null: not counted.", null=True
                    ),
                ),
                ("stale", models.BooleanField(db_default=True)),
            ],
        ),
    ]
