"""audit.sql: `__any` finds what `__in` finds with one parameter; timestamps read back as the
very instants written, in UTC, by the fast loader."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from audit.sql import IntArray, TimestamptzArray, UtcTimestamptzLoader

AT = datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=UTC)
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the loader and the array are PostgreSQL's"
)


def entries(*labels: str) -> list[AuditEntry]:
    return [
        AuditEntry.objects.create(
            at=AT, action="x", object_type="invoice", object_id=n, object_label=label
        )
        for n, label in enumerate(labels, start=1)
    ]


@pytest.mark.django_db
def test_any_finds_what_in_finds():
    made = entries("a", "b", "o'brien", "d")
    ids = [made[0].pk, made[2].pk, 10**12]  # one id that exists nowhere
    by_any = set(AuditEntry.objects.filter(pk__any=ids).values_list("object_label", flat=True))
    by_in = set(AuditEntry.objects.filter(pk__in=ids).values_list("object_label", flat=True))
    assert by_any == by_in == {"a", "o'brien"}
    # Text values, quotes included, and an excluded set.
    labels = ["o'brien", "d"]
    found = AuditEntry.objects.filter(object_label__any=labels).values_list("pk", flat=True)
    assert set(found) == {made[2].pk, made[3].pk}
    assert AuditEntry.objects.exclude(pk__any=ids).count() == 2
    # An empty list finds nothing (and is not an error).
    assert not AuditEntry.objects.filter(pk__any=[]).exists()


@pytest.mark.django_db
def test_any_across_a_relation():
    from accounts.models import Account, Partner

    partner = Partner.objects.create(name="P")
    account = Account.objects.create(slug="acme", name="Acme", partner=partner)
    Account.objects.create(slug="other", name="Other")
    assert list(Partner.objects.filter(accounts__pk__any=[account.pk])) == [partner]
    assert list(Account.objects.filter(partner_id__any=[partner.pk])) == [account]


@postgres_only
@pytest.mark.django_db
def test_any_sends_one_array_parameter_however_many_values():
    entries("a")
    with CaptureQueriesContext(connection) as captured:
        list(AuditEntry.objects.filter(pk__any=list(range(1, 501))))
    (query,) = captured.captured_queries
    assert "= ANY(" in query["sql"]
    assert " IN (" not in query["sql"]


@postgres_only
@pytest.mark.django_db
def test_timestamps_read_back_in_utc_through_the_fast_loader():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)  # timestamptz, text
    assert loader is UtcTimestamptzLoader
    paris = timezone(timedelta(hours=1))
    written = [AT, AT.replace(microsecond=0), datetime(1, 1, 1, tzinfo=UTC), AT.astimezone(paris)]
    made = [
        AuditEntry.objects.create(at=at, action="x", object_type="invoice", object_id=n)
        for n, at in enumerate(written)
    ]
    read = [AuditEntry.objects.get(pk=entry.pk).at for entry in made]
    assert read == written
    assert all(at.tzinfo is UTC for at in read)


@postgres_only
@pytest.mark.django_db
def test_a_session_in_another_zone_still_reads_the_same_instant():
    (entry,) = entries("a")
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'America/New_York'")
        try:
            cursor.execute("SELECT at FROM audit_auditentry WHERE id = %s", [entry.pk])
            (at,) = cursor.fetchone()
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")
    assert at == AT and at.tzinfo is UTC


@postgres_only
@pytest.mark.django_db
def test_sessions_compile_no_plan_just_in_time():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


@postgres_only
@pytest.mark.django_db
def test_typed_arrays_reach_the_database_as_the_same_values():
    paris = timezone(timedelta(hours=1))
    ids = IntArray([1, 0, -5, 10**15])
    instants = TimestamptzArray([AT, None, datetime(1, 1, 1, tzinfo=UTC), AT.astimezone(paris)])
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        cursor.execute("SELECT %s::bigint[], %s::timestamptz[]", [ids, instants])
        assert cursor.fetchone() == (list(ids), list(instants))
        cursor.execute("SELECT cardinality(%s::bigint[])", [IntArray()])
        assert cursor.fetchone() == (0,)
    # One literal each, not an ARRAY[...] of quoted items.
    assert "'{1,0,-5,1000000000000000}'" in captured.captured_queries[0]["sql"]


@postgres_only
@pytest.mark.django_db
def test_any_of_ids_sends_them_as_one_literal():
    made = entries("a", "b")
    with CaptureQueriesContext(connection) as captured:
        found = list(AuditEntry.objects.filter(pk__any=[made[1].pk]).values_list("object_label"))
    assert found == [("b",)]
    assert f"'{{{made[1].pk}}}'::bigint[]" in captured.captured_queries[0]["sql"]
