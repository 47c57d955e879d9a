"""Checking buyers' VAT ids against VIES, and the seller's tax settings at start.

- `vat_id_check(account_id=...)`: asks VIES (billing.vies_gateway) and stores the answer on the
  account: status, date, consultation number, the name VIES returned. When VIES cannot answer,
  the last good answer (valid or invalid) is kept untouched, date included, so the id stays
  due for a re-check; with no good answer the status says `unavailable` and VAT is charged
  (plans.tax says so on the invoice).
- `vat_id_check_task`: the Celery task, retried with backoff while VIES cannot answer.
- `vat_id_check_due(...)`: whether an account's answer is missing or older than 30 days (the
  issue path asks before it freezes a tax decision); `vat_ids_recheck_task`, daily (beat),
  queues a check of every id that is due.
- `seller_tax()` and the system check `tax.E001`...: the seller entity from settings;
  `check --deploy` also warns (`tax.W001`) while it is the demo's made-up company. Every
  server and worker refuses to start on `seller_problems()` (billing_portal/startup.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.utils import timezone

from accounts.models import Account, TaxIdStatus
from accounts.vat import vat_id_check_offline, vat_id_country
from plans.selectors import tax_rate_tables_read
from plans.tax import EU_MEMBER_STATES, RateTable, SellerTax, UnknownRate, us_rates
from retries import Exponential

from . import vies_gateway

logger = logging.getLogger(__name__)

# Stripe re-tries VIES through its outages for a while; we keep the last good answer meanwhile
# and re-ask: 1, 2, 4, 8, 16 minutes, then every 30 (member states' services come back within
# the hour as a rule), 8 tries in all before the next issue-time or monthly check takes over.
RECHECK_AFTER = timedelta(days=30)
VIES_BACKOFF = Exponential(first=timedelta(minutes=1), cap=timedelta(minutes=30))
VIES_MAX_RETRIES = 7

# The answers VIES gives about the id itself: worth keeping through an outage.
_GOOD_ANSWERS = (TaxIdStatus.VALID, TaxIdStatus.INVALID)


def vat_id_check_due(*, account: Account, now: datetime) -> bool:
    """An EU VAT id with no good answer yet, or one older than 30 days."""
    if not account.vat_id or not vat_id_country(account.vat_id):
        return False
    if account.tax_id_status not in _GOOD_ANSWERS or account.tax_id_checked_at is None:
        return True
    return now - account.tax_id_checked_at >= RECHECK_AFTER


def vat_id_check(*, account_id: int) -> str:
    """Ask VIES about the account's VAT id and store the answer; returns the outcome."""
    account = Account.objects.get(pk=account_id)
    vat_id = account.vat_id
    if not vat_id or not vat_id_country(vat_id):
        return TaxIdStatus.UNCHECKED  # no EU VAT id: nothing for VIES
    if vat_id_check_offline(vat_id).problem:
        # Check digits wrong: VIES would say no, and no outage can make it valid.
        answer = vies_gateway.ViesAnswer(vies_gateway.INVALID, reason="offline check")
    else:
        # Outside any transaction: a slow VIES must not hold a row lock.
        answer = vies_gateway.vies_check(vat_id=vat_id, requester_vat_id=settings.TAX_SELLER_VAT_ID)
    now = timezone.now()
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        if account.vat_id != vat_id:
            # Changed while VIES answered: this answer is about the old id. The change
            # queues its own check.
            return TaxIdStatus.PENDING
        if answer.outcome == vies_gateway.UNAVAILABLE:
            if account.tax_id_status not in _GOOD_ANSWERS:
                account.tax_id_status = TaxIdStatus.UNAVAILABLE
                account.save(update_fields=["tax_id_status"])
            # else: the last good answer stands, its date too (a re-check stays due).
            return TaxIdStatus.UNAVAILABLE
        account.tax_id_status = TaxIdStatus(answer.outcome)
        account.tax_id_checked_at = now
        account.tax_id_consultation = answer.consultation[:64]
        account.tax_id_name = answer.name[:200]
        account.save(
            update_fields=[
                "tax_id_status",
                "tax_id_checked_at",
                "tax_id_consultation",
                "tax_id_name",
            ]
        )
    logger.info("VAT id of account %s: %s", account_id, answer.outcome)
    return answer.outcome


def vat_ids_due_for_check(*, now: datetime) -> list[int]:
    """Accounts with an EU VAT id whose answer is missing or 30 days old (the daily sweep)."""
    candidates = Account.objects.exclude(vat_id="").only(
        "id", "vat_id", "tax_id_status", "tax_id_checked_at"
    )
    return [a.pk for a in candidates.iterator() if vat_id_check_due(account=a, now=now)]


def vies_retry_countdown(retries_so_far: int) -> float:
    """Seconds before the next try, after `retries_so_far` retries already made."""
    return VIES_BACKOFF.wait(retries_so_far + 1).total_seconds()


@shared_task(name="billing.tax_checks.vat_id_check", bind=True, max_retries=VIES_MAX_RETRIES)
def vat_id_check_task(self, account_id: int) -> str:
    """Check one account's VAT id; while VIES cannot answer, try again later (backoff)."""
    outcome = vat_id_check(account_id=account_id)
    if outcome == TaxIdStatus.UNAVAILABLE and self.request.retries < self.max_retries:
        raise self.retry(countdown=vies_retry_countdown(self.request.retries))
    return outcome


@shared_task(name="billing.tax_checks.vat_ids_recheck")
def vat_ids_recheck_task() -> int:
    """Periodic (beat, daily): queue a check of every VAT id due for one; returns how many."""
    due = vat_ids_due_for_check(now=timezone.now())
    for account_id in due:
        vat_id_check_task.delay(account_id)
    return len(due)


# --- The seller: one legal entity, from settings, checked when the portal starts.


def seller_tax() -> SellerTax:
    """The seller of the tax decision, from settings (TAX_SELLER_*)."""
    return SellerTax(
        country=settings.TAX_SELLER_COUNTRY.upper(),
        vat_id=settings.TAX_SELLER_VAT_ID,
        oss_registered=settings.TAX_SELLER_OSS_REGISTERED,
        us_states=frozenset(state.upper() for state in settings.TAX_SELLER_US_STATES),
    )


def seller_problems(*, databases: Sequence[str] | None = None) -> list[str]:
    """What is wrong with the seller's tax settings, in words (empty: nothing). `databases`
    (as Django gives it to system checks) may be read for the loaded US rates."""
    problems = []
    if not settings.TAX_SELLER_LEGAL_NAME.strip():
        problems.append("TAX_SELLER_LEGAL_NAME is empty: every invoice names its seller.")
    if not [line for line in settings.TAX_SELLER_ADDRESS if line.strip()]:
        problems.append("TAX_SELLER_ADDRESS is empty: every invoice gives the seller's address.")
    seller = seller_tax()
    if len(seller.country) != 2 or not seller.country.isalpha():
        problems.append(f"TAX_SELLER_COUNTRY {seller.country!r} is not a two-letter ISO code.")
    if seller.country in EU_MEMBER_STATES:
        check = vat_id_check_offline(seller.vat_id, country=seller.country)
        if check.problem:
            problems.append(f"TAX_SELLER_VAT_ID: {check.problem}")
    today = timezone.now().date()
    us_table, remedy = _us_rate_table(databases=databases)
    for state in sorted(seller.us_states):
        try:
            us_table.rate_on(state, today)
        except UnknownRate:
            problems.append(
                f"TAX_SELLER_US_STATES names {state}, which has no rate in force in {remedy}"
            )
    return problems


def _us_rate_table(*, databases: Sequence[str] | None) -> tuple[RateTable, str]:
    """The US rates the issue path will use (the table), or the packaged file when the table
    cannot be read; with the words that tell the operator where to add a missing rate."""
    # System checks run before migrations (migrate checks first, so the table may not exist
    # yet), and Django hands them no database unless one may be queried (`check` and
    # `runserver` give none; `migrate`, `check --database` and the test runner do). The
    # packaged file is the table's seed, so it is the fallback: it says what a fresh
    # database holds.
    if databases and DEFAULT_DB_ALIAS in databases:
        try:
            # A savepoint: a missing table must not break a transaction around the check.
            with transaction.atomic():
                _, us_table = tax_rate_tables_read()
        except DatabaseError:
            pass
        else:
            return us_table, (
                "the tax rate table: load one with `manage.py tax_rates_load` (with its source) "
                "or remove the state."
            )
    return us_rates(), "plans/tax/us_rates.json: add it (with its source) or remove the state."


# The settings' defaults (billing_portal/settings.py): the demo's made-up company. They pass
# every check above, so a deployment that never set its own would print a company that does
# not exist, and a VAT id that is not its own, on every invoice it issues.
DEMO_SELLER = {
    "TAX_SELLER_LEGAL_NAME": "Helpdesk Billing SAS",
    "TAX_SELLER_VAT_ID": "FR11123456782",
}


@checks.register("tax", deploy=True)
def seller_demo_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """`check --deploy`: the seller is still the demo's made-up company."""
    left = [name for name, demo in DEMO_SELLER.items() if getattr(settings, name) == demo]
    if not left:
        return []
    return [
        checks.Warning(
            f"The seller is the demo's made-up company ({', '.join(left)} left at the "
            "default): every invoice would name it.",
            hint="Set TAX_SELLER_* to your legal entity (docs/tax.md, "
            "'What a deployment configures').",
            id="tax.W001",
        )
    ]


@checks.register("tax")
def seller_settings_check(
    app_configs=None, databases: Sequence[str] | None = None, **kwargs
) -> list[checks.CheckMessage]:
    """Django system check: the seller entity is complete and its VAT id well formed."""
    return [
        checks.Error(
            problem, hint="See docs/tax.md, 'What a deployment configures'.", id=f"tax.E{n:03d}"
        )
        for n, problem in enumerate(seller_problems(databases=databases), start=1)
    ]
