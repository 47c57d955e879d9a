"""The re-evaluation queue's rows are updated where they lie (issue 28).

Each queued subject is inserted by ingest, updated by the worker's claim, then deleted. Its
pages were filled by the inserts, so nearly every claim wrote a new row version elsewhere and
a new entry in each of the table's indexes (503 of 24,317 claims were heap-only in one bench
run). With half of each page left free, and no index on a column a claim or a mark writes,
PostgreSQL updates them in place (heap-only tuples). The account's own index goes too:
`reeval_once` begins with the account."""

import django.db.models.deletion
from django.db import migrations, models


def fillfactor(percent):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(
                f"ALTER TABLE metering_reevaluation SET (fillfactor = {int(percent)})"
            )

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_login_and_terms_records"),
        ("metering", "0010_periodtally_moved"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reevaluation",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                to="accounts.account",
            ),
        ),
        migrations.RunPython(fillfactor(50), fillfactor(100)),
    ]
