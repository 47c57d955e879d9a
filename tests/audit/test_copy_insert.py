"""copy_insert writes what bulk_create writes: the same values read back, pks set in order."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from audit.bulk import copy_insert, copy_rows
from audit.models import AuditEntry, Source
from billing.models import InvoiceReason

AT = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)


def entry(n: int, **fields) -> AuditEntry:
    return AuditEntry(
        at=AT,
        action="invoice.issued",
        object_type="invoice",
        object_id=n,
        **fields,
    )


@pytest.mark.django_db
def test_rows_read_back_as_written_with_their_pks_in_order():
    entries = [
        entry(1, before=None, after={"status": "open", "lines": [1, 2]}, reason='it\'s \\ "odd"'),
        entry(2, before="draft", after=None, object_label="2026-000001", account_id=7),
        # An enum member and a multi-line text go through the ORM's own preparation.
        entry(3, source=Source.OPERATOR, reason=InvoiceReason.PERIOD_CLOSE + "\n\ttab"),
    ]
    copy_insert(entries)
    pks = [e.pk for e in entries]
    assert None not in pks and pks == sorted(pks)
    assert all(not e._state.adding for e in entries)
    stored = {e.pk: e for e in AuditEntry.objects.filter(pk__in=pks)}
    for written in entries:
        read = stored[written.pk]
        for field in ("at", "source", "action", "object_id", "object_label", "account_id"):
            assert getattr(read, field) == getattr(written, field)
        assert (read.before, read.after, read.reason) == (
            written.before,
            written.after,
            str(written.reason),
        )
    # The choice is stored as its text, as the ORM stores it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT source FROM audit_auditentry WHERE id = %s", [entries[2].pk])
        assert cursor.fetchone() == ("operator",)
    # The sequence goes on after the ids taken: the next ordinary insert does not collide.
    later = AuditEntry.objects.create(at=AT, action="x", object_type="invoice", object_id=4)
    assert later.pk > max(pks)


@pytest.mark.django_db
def test_nothing_to_insert_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        copy_insert([])


@pytest.mark.django_db
def test_json_documents_read_back_as_bulk_create_writes_them():
    documents = [
        {"b": [1, 2.5, None, True], "a": {"nested": 'é ☃ "quoted" \\ back'}},
        {1: "an int key", "2": 3},  # the ORM's encoder writes int keys as strings
        ["a", "list"],
        "a string",
        0,
    ]
    copied = [entry(n, after=document) for n, document in enumerate(documents)]
    created = [entry(n, after=document) for n, document in enumerate(documents)]
    copy_insert(copied)
    AuditEntry.objects.bulk_create(created)
    read = dict(AuditEntry.objects.values_list("pk", "after"))
    for by_copy, by_orm in zip(copied, created, strict=True):
        assert read[by_copy.pk] == read[by_orm.pk]
    # None is SQL NULL, as the ORM stores it, not a JSON null.
    (empty,) = [entry(9, after=None)]
    copy_insert([empty])
    assert AuditEntry.objects.filter(pk=empty.pk, after__isnull=True).exists()


@pytest.mark.django_db
def test_copy_rows_writes_what_the_orm_writes_and_returns_ids_in_order():
    fields = ("at", "source", "actor", "action", "object_type", "object_id", "object_label")
    fields += ("after", "before", "reason")
    rows = [
        (AT, Source.OPERATOR, "ops", "invoice.issued", "invoice", 1, "2026-000001")
        + ({"lines": [1, 2], "é": "☃"}, None, ""),
        (AT, "system", "", "invoice.paid", "invoice", 2, "")
        + (None, "open", 'it\'s \\ "odd"\n\ttab'),
    ]
    ids = copy_rows(AuditEntry, fields, rows)
    assert len(ids) == 2 and ids == sorted(ids)
    stored = {e.pk: e for e in AuditEntry.objects.filter(pk__in=ids)}
    for id_, row in zip(ids, rows, strict=True):
        read = stored[id_]
        assert tuple(getattr(read, field) for field in fields) == row
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT source, after IS NULL FROM audit_auditentry WHERE id = ANY(%s) ORDER BY id",
            [ids],
        )
        assert cursor.fetchall() == [("operator", False), ("system", True)]
    assert copy_rows(AuditEntry, fields, []) == []
