"""VAT ids against VIES, through the loopback stand-in (scripts/vies_standin.py): the adapter's
three outcomes, the evidence stored on the account, the last good answer kept through an
outage, the 30-day re-check, and the task's retries with backoff."""

from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Account, TaxIdStatus
from billing import tax_checks, vies_gateway
from billing.tax_checks import vat_id_check, vat_id_check_due, vat_id_check_task
from plans.tax import BuyerTax, Treatment, tax_decide

# The demo's seller: VIES names it as the requester, and a consultation number comes back.
pytestmark = pytest.mark.usefixtures("eu_seller")

REGISTERED = "DE123456788"  # the stand-in's "Beispiel Support GmbH"
NOT_REGISTERED = "DE111222339"  # check digits right, unknown to VIES


@pytest.fixture
def worker_retries(monkeypatch):
    """Run the task as a worker would run its retries: eagerly, one after the other (countdowns
    are not waited), without the tests' setting that raises a task's Retry to the caller."""
    # The app reads Django's CELERY_* names first (namespace "CELERY").
    monkeypatch.setitem(vat_id_check_task.app.conf, "CELERY_TASK_EAGER_PROPAGATES", False)


@pytest.fixture
def german_account(account):
    Account.objects.filter(pk=account.pk).update(country="DE", vat_id=REGISTERED)
    account.refresh_from_db()
    return account


def test_gateway_valid_returns_the_name_and_the_consultation_number(vies_standin, settings):
    answer = vies_gateway.vies_check(vat_id="de 123 456 788", requester_vat_id="FR11123456782")
    assert answer.outcome == "valid"
    assert answer.name == "Beispiel Support GmbH"
    assert "Berlin" in answer.address
    assert answer.consultation.startswith("WAPIAAAA")
    # We name ourselves as requester: that is what makes VIES give a consultation number.
    assert vies_standin.checks() == [
        {
            "countryCode": "DE",
            "vatNumber": "123456788",
            "requesterMemberStateCode": "FR",
            "requesterNumber": "11123456782",
        }
    ]


def test_gateway_invalid_for_an_id_vies_does_not_know(vies_standin):
    answer = vies_gateway.vies_check(vat_id=NOT_REGISTERED)
    assert (answer.outcome, answer.name, answer.consultation) == ("invalid", "", "")


@pytest.mark.parametrize(
    ("mode", "reason"), [("ms_unavailable", "MS_UNAVAILABLE"), ("down", "HTTP 503")]
)
def test_gateway_unavailable_when_vies_cannot_answer(vies_standin, mode, reason):
    vies_standin.mode(mode)
    answer = vies_gateway.vies_check(vat_id=REGISTERED)
    assert (answer.outcome, answer.reason) == ("unavailable", reason)


def test_gateway_unavailable_when_vies_is_unreachable(settings):
    from tests.stripe_standin import free_port

    settings.VIES_API_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert vies_gateway.vies_check(vat_id=REGISTERED).outcome == "unavailable"


def test_valid_answer_is_stored_with_its_evidence(vies_standin, german_account):
    assert vat_id_check(account_id=german_account.pk) == "valid"
    german_account.refresh_from_db()
    assert german_account.tax_id_status == TaxIdStatus.VALID
    assert german_account.tax_id_name == "Beispiel Support GmbH"
    assert german_account.tax_id_consultation.startswith("WAPIAAAA")
    assert timezone.now() - german_account.tax_id_checked_at < timedelta(minutes=1)


def test_invalid_answer_is_stored(vies_standin, german_account):
    Account.objects.filter(pk=german_account.pk).update(vat_id=NOT_REGISTERED)
    assert vat_id_check(account_id=german_account.pk) == "invalid"
    german_account.refresh_from_db()
    assert german_account.tax_id_status == TaxIdStatus.INVALID
    assert german_account.tax_id_name == ""


def test_wrong_check_digits_are_invalid_without_asking_vies(vies_standin, german_account):
    Account.objects.filter(pk=german_account.pk).update(vat_id="DE123456789")
    assert vat_id_check(account_id=german_account.pk) == "invalid"
    assert vies_standin.checks() == []


def test_unavailable_keeps_the_last_good_answer(vies_standin, german_account):
    vat_id_check(account_id=german_account.pk)
    german_account.refresh_from_db()
    kept = (
        german_account.tax_id_status,
        german_account.tax_id_checked_at,
        german_account.tax_id_consultation,
        german_account.tax_id_name,
    )
    vies_standin.mode("ms_unavailable")
    assert vat_id_check(account_id=german_account.pk) == "unavailable"
    german_account.refresh_from_db()
    assert (
        german_account.tax_id_status,
        german_account.tax_id_checked_at,
        german_account.tax_id_consultation,
        german_account.tax_id_name,
    ) == kept
    # Still valid: the invoice is reverse charged on the last good answer.
    assert decide_for(german_account).treatment == Treatment.REVERSE_CHARGE


def test_unavailable_with_no_good_answer_charges_vat_and_says_so(vies_standin, german_account):
    vies_standin.mode("down")
    assert vat_id_check(account_id=german_account.pk) == "unavailable"
    german_account.refresh_from_db()
    assert german_account.tax_id_status == TaxIdStatus.UNAVAILABLE
    assert german_account.tax_id_checked_at is None
    decision = decide_for(german_account)
    assert (decision.treatment, decision.vat_id_unconfirmed) == (Treatment.OSS, True)


def test_recheck_is_due_after_30_days_and_refreshes_the_evidence(vies_standin, german_account):
    start = timezone.now()
    assert vat_id_check_due(account=german_account, now=start)  # never checked
    with time_machine.travel(start, tick=False):
        vat_id_check(account_id=german_account.pk)
    german_account.refresh_from_db()
    first = german_account.tax_id_consultation
    assert not vat_id_check_due(account=german_account, now=start + timedelta(days=29, hours=23))
    later = start + timedelta(days=30)
    assert vat_id_check_due(account=german_account, now=later)
    with time_machine.travel(later, tick=False):
        vat_id_check(account_id=german_account.pk)
    german_account.refresh_from_db()
    assert german_account.tax_id_checked_at == later
    assert german_account.tax_id_consultation != first
    assert not vat_id_check_due(account=german_account, now=later)


def test_no_check_is_due_without_an_eu_vat_id(german_account):
    german_account.vat_id = "GB980780684"
    assert not vat_id_check_due(account=german_account, now=timezone.now())
    german_account.vat_id = ""
    assert not vat_id_check_due(account=german_account, now=timezone.now())


def test_task_retries_with_backoff_until_vies_answers(vies_standin, german_account, worker_retries):
    vies_standin.mode("ms_unavailable", times=3)
    with mock.patch.object(
        tax_checks, "vies_retry_countdown", wraps=tax_checks.vies_retry_countdown
    ) as countdown:
        result = vat_id_check_task.apply(args=[german_account.pk])
    assert result.get() == "valid"
    assert len(vies_standin.checks()) == 4
    # 1, 2 then 4 minutes between the tries (retries.Exponential, doubling).
    assert [c.args[0] for c in countdown.call_args_list] == [0, 1, 2]
    assert [tax_checks.vies_retry_countdown(n) for n in range(8)] == [
        60,
        120,
        240,
        480,
        960,
        1800,
        1800,
        1800,
    ]
    german_account.refresh_from_db()
    assert german_account.tax_id_status == TaxIdStatus.VALID


def test_task_gives_up_after_its_retries_and_keeps_unavailable(
    vies_standin, german_account, worker_retries
):
    vies_standin.mode("down")
    result = vat_id_check_task.apply(args=[german_account.pk])
    assert result.get() == "unavailable"
    assert len(vies_standin.checks()) == 1 + tax_checks.VIES_MAX_RETRIES
    german_account.refresh_from_db()
    assert german_account.tax_id_status == TaxIdStatus.UNAVAILABLE


def decide_for(account):
    buyer = BuyerTax(
        country=account.country,
        us_state=account.us_state,
        vat_id=account.vat_id,
        vat_id_status=account.tax_id_status,
    )
    return tax_decide(
        seller=tax_checks.seller_tax(),
        buyer=buyer,
        channel=account.billing_channel,
        supplied_on=timezone.now().date(),
    )


def test_daily_sweep_checks_the_ids_that_are_due(vies_standin, german_account, make_account):
    from billing.tax_checks import vat_ids_due_for_check, vat_ids_recheck_task

    fresh = make_account(slug="fresh")
    Account.objects.filter(pk=fresh.pk).update(
        country="FR",
        vat_id="FR44732829320",
        tax_id_status=TaxIdStatus.VALID,
        tax_id_checked_at=timezone.now() - timedelta(days=3),
    )
    make_account(slug="no-vat-id")
    now = timezone.now()
    assert vat_ids_due_for_check(now=now) == [german_account.pk]  # never checked
    assert vat_ids_recheck_task() == 1  # queued (in-process in tests): asks VIES once
    assert [c["vatNumber"] for c in vies_standin.checks()] == ["123456788"]
    # A month on, both answers are over 30 days old.
    month_on = sorted(vat_ids_due_for_check(now=now + timedelta(days=31)))
    assert month_on == sorted([german_account.pk, fresh.pk])
