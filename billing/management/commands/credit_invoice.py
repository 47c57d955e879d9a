from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.errors import DomainError
from audit.services import audit_record
from billing.invoicing import credit_note_issue
from billing.models import Invoice


class Command(BaseCommand):
    help = "Issue a credit note against a final invoice (corrections are never edits, F5)."

    def add_arguments(self, parser):
        parser.add_argument("--number", required=True, help="The invoice number, e.g. 2026-000123.")
        parser.add_argument(
            "--amount-minor", type=int, required=True, help="Amount in minor units."
        )
        parser.add_argument(
            "--description",
            required=True,
            help="What the customer reads on the credit note, e.g. 'Goodwill credit'.",
        )
        parser.add_argument(
            "--reason", required=True, help="Why, for the audit log (never shown to the customer)."
        )

    def handle(self, *args, number, amount_minor, description, reason, **options):
        invoice = Invoice.objects.filter(number=number).first()
        if invoice is None:
            raise CommandError(f"No invoice {number}.")
        if not reason.strip():
            raise CommandError("Say why: --reason is kept in the audit log.")
        try:
            with transaction.atomic():
                note = credit_note_issue(
                    invoice=invoice, amount_minor=amount_minor, description=description
                )
                audit_record(
                    action="command.credit_note",
                    obj=invoice,
                    after={"credit_note": note.number, "amount": amount_minor},
                    reason=reason.strip(),
                )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Credit note {note.number} for {-note.total_minor} minor units of {note.currency}."
        )
