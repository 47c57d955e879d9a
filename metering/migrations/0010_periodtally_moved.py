"""The tallies that may have moved since their count (stale, or never counted), indexed apart:
a close asks for the batch's accounts' moved periods first and looks at the history of those
accounts only (billing.closing.tallies.periods_moved). A handful of rows, where the primary key
would walk every period of every account."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0009_period_tallies"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="periodtally",
            index=models.Index(
                condition=models.Q(stale=True) | models.Q(units__isnull=True),
                fields=["account_id", "period_start"],
                name="periodtally_moved_idx",
            ),
        ),
    ]
