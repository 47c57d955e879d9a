"""Every closed usage period has a tally (metering.models.PeriodTally): a close then finds the
earlier periods whose late usage it may bill among the stale tallies alone, and reads nothing
of the rest of an account's history (billing.closing.tallies.periods_moved).

On PostgreSQL a statement trigger on the closes' inserts makes a stale, uncounted tally for each
new close's period where none is (the close has written a counted one already: nothing to do);
the closes already stored get theirs here. A tally made stale is counted by the next close that
looks back at it, as before. The SQLite demo keeps no tallies: it counts every period."""

from django.db import migrations

# The tallies of a set of closes' periods, in (account, period) order as every writer of
# tallies takes them (billing.closing.tallies): a close and a fold wait, never deadlock.
_TALLIED = (
    "INSERT INTO metering_periodtally (account_id, period_start) "  # noqa: S608
    "SELECT DISTINCT s.account_id, c.period_start FROM {closes} c "
    "JOIN plans_subscription s ON s.id = c.subscription_id ORDER BY 1, 2 "
    "ON CONFLICT (account_id, period_start) DO NOTHING"
)


def tallies_keep(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    body = _TALLIED.format(closes="new_closes")
    schema_editor.execute(
        "CREATE FUNCTION billing_usageclose_tallied() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {body}; RETURN NULL; END $$"
    )
    # Inserts only: the app never moves a close to another period or subscription.
    schema_editor.execute(
        "CREATE TRIGGER billing_usageclose_tallied AFTER INSERT ON billing_usageclose "
        "REFERENCING NEW TABLE AS new_closes FOR EACH STATEMENT "
        "EXECUTE FUNCTION billing_usageclose_tallied()"
    )
    schema_editor.execute(_TALLIED.format(closes="billing_usageclose"))


def tallies_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP TRIGGER IF EXISTS billing_usageclose_tallied ON billing_usageclose")
    schema_editor.execute("DROP FUNCTION IF EXISTS billing_usageclose_tallied()")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0016_ticket_disputes"),
        ("metering", "0010_periodtally_moved"),
        ("plans", "0001_initial"),
    ]

    operations = [migrations.RunPython(tallies_keep, tallies_drop)]
