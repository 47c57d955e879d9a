"""Re-evaluation reads and writes a subject's charge rows through indexes, whatever the size of
the charge table (issue 28): one probe of the unique index per subject, and only the rows
whose verdict changed are written. The plans are PostgreSQL's, read by EXPLAIN after a few
thousand rows and ANALYZE: a plan that scans the table is cheap on an empty one and grows with
it, which is how the earlier DELETE came to cost 48 ms per batch even when it deleted
nothing."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from metering import event_store, services
from metering.models import Charge

from .helpers import ingest

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's plans (the demo's SQLite has none)"
)

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
PERIOD = datetime(2026, 11, 1, tzinfo=UTC)
SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def scans(sql: str, params: list) -> list[tuple[str, str]]:
    """(node type, partition) of every scan of a charge partition that holds rows, in the
    statement's plan. An empty partition (next month's) may be read by a Seq Scan: it has no
    page to read, and the planner knows it."""
    ((plan,),) = event_store.statement_run("EXPLAIN (FORMAT JSON) " + sql, params)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'metering\\_charge\\_%' "
            "AND relkind = 'r' AND reltuples > 0"
        )
        holding = {name for (name,) in cursor.fetchall()}
    assert holding, "ANALYZE has seen the rows"
    found, stack = [], [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", ()))
        if node.get("Relation Name") in holding:
            found.append((node["Node Type"], node["Relation Name"]))
    return found


@pytest.fixture
def shop(make_account):
    with time_machine.travel(PERIOD, tick=False):
        return make_account(slug="shop")


@pytest.fixture
def many_charges(shop):
    """4,000 tickets' rows (a counted unit this period, a verdict not counted) and fresh
    statistics: what the planner knows of a table in use."""
    rows = []
    for n in range(4000):
        at = PERIOD + timedelta(minutes=n)
        common = (shop.pk, "ticket", f"T-{n}")
        rules = ["H1"]
        rows.append((*common, "helpdesk_tickets", 1, "final", at, None, PERIOD, rules, at, at))
        rows.append((*common, "voice_tickets", 0, "not_counted", None, None, None, rules, at, at))
    event_store.insert_charges(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE metering_charge")
    return shop


@pytest.mark.parametrize("horizon", [None, PERIOD - timedelta(days=90)])
def test_the_charge_read_probes_the_unique_index_per_subject(many_charges, horizon):
    # A batch as ingest makes them: half the subjects have rows, half are new.
    subjects = [(many_charges.pk, "ticket", f"T-{n}") for n in range(3000, 5000)]
    found = scans(*event_store.charges_read_statement(subjects, keep_before=horizon))
    assert found, "the plan reads the charge table"
    assert all(node in SCANS for node, _ in found), found
    rows = event_store.charges_read(subjects, keep_before=horizon)
    assert len(rows) == 2000  # two rows for each of the 1,000 subjects that have any


def test_the_charge_delete_and_update_probe_the_id_index(many_charges):
    ids = list(Charge.objects.order_by("id").values_list("id", flat=True)[:300])
    for sql, params in [
        (event_store._CHARGES_DELETE, [ids]),
        (
            event_store._CHARGES_UPDATE,
            [ids, ["final"] * 300, [NOW] * 300, [None] * 300, ['["H1"]'] * 300]
            + [[NOW] * 300, [NOW] * 300, ids],
        ),
    ]:
        found = scans(sql, params)
        assert found and all(node in SCANS for node, _ in found), found


def physical(account) -> dict[int, str]:
    """Each charge row's id and place on disk: a row written again moves."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, ctid::text FROM metering_charge WHERE account_id = %s", [account.pk]
        )
        return dict(cursor.fetchall())


def test_an_evaluation_that_changes_no_verdict_writes_no_row(shop):
    opened = NOW - timedelta(days=2)
    events = [
        {
            "id": f"{t}-c",
            "type": "message",
            "ticket": t,
            "occurred_at": opened,
            "channel": "email",
            "author": "customer",
        }
        for t in ("T-1", "T-2")
    ] + [
        {
            "id": f"{t}-a",
            "type": "message",
            "ticket": t,
            "occurred_at": opened + timedelta(hours=1),
            "channel": "email",
            "author": "agent",
        }
        for t in ("T-1", "T-2")
    ]
    ingest(shop, events, now=NOW)
    before = physical(shop)
    recorded = dict(Charge.objects.values_list("id", "recorded_at"))
    assert before
    # T-1 again with nothing new; T-2 with a later reply that moves nothing counted.
    ingest(
        shop,
        [
            {
                "id": "T-2-note",
                "type": "internal_note",
                "ticket": "T-2",
                "occurred_at": opened + timedelta(hours=2),
                "author": "agent",
            }
        ],
        now=NOW,
    )
    services.reevaluate(subjects=[(shop.pk, "ticket", "T-1")], as_of=NOW + timedelta(hours=1))
    assert physical(shop) == before
    assert dict(Charge.objects.values_list("id", "recorded_at")) == recorded
