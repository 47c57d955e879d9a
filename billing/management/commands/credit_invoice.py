from django.core.management.base import BaseCommand, CommandError

from accounts.errors import DomainError
from billing.invoicing import credit_note_issue
from billing.models import Invoice


class Command(BaseCommand):
    help = "Issue a credit note against a final invoice (corrections are never edits, F5)."

    def add_arguments(self, parser):
        parser.add_argument("--number", required=True, help="The invoice number, e.g. 2026-000123.")
        parser.add_argument(
            "--amount-minor", type=int, required=True, help="Amount in minor units."
        )
        parser.add_argument("--reason", required=True, help="Shown on the credit note.")

    def handle(self, *args, number, amount_minor, reason, **options):
        invoice = Invoice.objects.filter(number=number).first()
        if invoice is None:
            raise CommandError(f"No invoice {number}.")
        try:
            note = credit_note_issue(invoice=invoice, amount_minor=amount_minor, description=reason)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Credit note {note.number} for {-note.total_minor} minor units of {note.currency}."
        )
