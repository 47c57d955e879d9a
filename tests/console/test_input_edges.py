"""Input at the edge in the console (issue 22, item 6): reasons and references refuse control,
bidi and invisible characters (a reason may span lines), and a date falls in the window."""

import pytest

from audit.models import AuditEntry
from billing.models import Dunning

pytestmark = pytest.mark.django_db


def url(invoice, action):
    return f"/console/invoices/{invoice.pk}/{action}/"


def test_a_reason_with_an_ansi_escape_is_refused_and_nothing_happens(past_due, act):
    response = act(url(past_due, "void"), reason="billed by mistake\x1b[8m (hidden)")
    assert response.status_code == 400
    assert "U+001B (a control character) at position 18" in response.content.decode()
    past_due.refresh_from_db()
    assert past_due.status == "past_due"
    assert not AuditEntry.objects.filter(action__startswith="operator.").exists()


def test_a_reason_may_span_lines(past_due, act):
    act(url(past_due, "void"), reason="billed by mistake:\r\n\tthe plan was changed twice")
    past_due.refresh_from_db()
    assert past_due.status == "void"
    row = AuditEntry.objects.get(action="operator.void")
    assert row.reason == "billed by mistake:\r\n\tthe plan was changed twice"


def test_a_payment_reference_with_a_bidi_override_is_refused(past_due, act):
    response = act(url(past_due, "mark-paid"), reason="wire received", reference="BANK\u202e77")
    assert response.status_code == 400
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE)" in response.content.decode()
    past_due.refresh_from_db()
    assert past_due.status == "past_due"


@pytest.mark.parametrize("until", ["0001-01-01", "9999-12-31"])
def test_a_pause_until_a_date_outside_the_window_is_a_form_error(past_due, act, until):
    response = act(url(past_due, "pause"), reason="promised to pay", until=until)
    assert response.status_code == 400
    page = response.content.decode()
    assert "the accepted window: from 2000-01-01T00:00:00Z to five years from now" in page
    assert Dunning.objects.get(invoice=past_due).paused_until is None
