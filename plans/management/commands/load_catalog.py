from django.core.management.base import BaseCommand

from plans.catalog import catalog_load


class Command(BaseCommand):
    help = "(Re)load the default catalog (plans, add-ons, editions, prices) idempotently."

    def handle(self, *args, **options):
        counts = catalog_load()
        summary = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Catalog loaded: {summary}."))
