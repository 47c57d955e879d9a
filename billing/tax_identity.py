"""The buyer's tax identity, written from billing's side: the details service (accounts) plus
the VIES check it calls for. accounts may not import billing (the layers contract), so the
service there only marks a new VAT id `pending`; the callers here queue the check. And the
status in words, for the merchant's details page and the operator's console."""

from django.db import transaction

from accounts import services as account_services
from accounts.models import Account, TaxIdStatus
from plans.periods import format_day

from .tax_checks import vat_id_check_task


def vat_id_check_queue(*, account: Account) -> bool:
    """Ask VIES about the account's VAT id once the current transaction commits (at once
    outside one), if it waits for an answer; returns whether a check was queued."""
    if account.tax_id_status != TaxIdStatus.PENDING:
        return False
    account_id = account.pk
    # After the commit: the task reads the row, and must read the new id, not the old one.
    # Robust: the details are saved whatever becomes of the check (a broker down, or with
    # in-process tasks VIES down past the retries); a `pending` id is asked again by the
    # daily re-check (vat_ids_recheck_task) and before the next invoice is issued.
    transaction.on_commit(lambda: vat_id_check_task.delay(account_id), robust=True)
    return True


def account_billing_details_save(*, account: Account, **details: str) -> Account:
    """Save the billing details (the pages' form, the partner API); a changed VAT id (or
    country) is checked with VIES after the commit."""
    vat_id, country = account.vat_id, account.country
    with transaction.atomic():
        account = account_services.account_billing_details_update(account=account, **details)
        if (account.vat_id, account.country) != (vat_id, country):
            vat_id_check_queue(account=account)
    return account


def vat_id_status_words(*, account: Account) -> str:
    """What we know of the account's VAT id, in plain words (empty without a VAT id)."""
    if not account.vat_id:
        return ""
    status = account.tax_id_status
    checked_at = account.tax_id_checked_at
    if status == TaxIdStatus.PENDING:
        return "Checking with the EU's VIES service…"
    if status == TaxIdStatus.VALID:
        on = f" on {format_day(checked_at)}" if checked_at else ""
        number = (
            f", consultation number {account.tax_id_consultation}"
            if account.tax_id_consultation
            else ""
        )
        return f"Confirmed by VIES{on}{number}."
    if status == TaxIdStatus.INVALID:
        on = f" (checked on {format_day(checked_at)})" if checked_at else ""
        return f"VIES says this VAT id is not valid{on}: invoices carry VAT."
    if status == TaxIdStatus.UNAVAILABLE:
        return (
            "VIES could not be reached: VAT is charged until it confirms the id; "
            "a credit note follows."
        )
    return "Not checked: VIES checks the VAT ids of EU countries only."
