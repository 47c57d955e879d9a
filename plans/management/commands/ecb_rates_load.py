from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from plans.ecb_gateway import EcbUnavailable, ecb_rates_fetch
from plans.exchange_rates import EcbRatesRefused, ecb_rates_load
from plans.tax.ecb_file import EcbFileError, ecb_file_read
from plans.tax.rates import HERE

PACKAGED = HERE / "ecb_rates.xml"


class Command(BaseCommand):
    help = (
        "Load ECB euro reference rates (the format of eurofxref-daily.xml, or its 90-day and "
        "historical files) from a file or an http(s) URL into the exchange rate table: new "
        "days are added, days already there skipped, a file changing a loaded rate refused. "
        "With nothing given, loads the packaged plans/tax/ecb_rates.xml."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", nargs="?", help="A file, or an http(s) URL.")

    def handle(self, *args, source, **options):
        source = source or str(PACKAGED)
        if source.startswith(("http://", "https://")):
            try:
                content = ecb_rates_fetch(url=source)
            except EcbUnavailable as exc:
                raise CommandError(f"Nothing loaded: {exc}") from exc
        else:
            try:
                content = Path(source).read_bytes()
            except OSError as exc:
                raise CommandError(f"Nothing loaded: {source}: {exc.strerror}") from exc
        try:
            rates = ecb_file_read(content)
            result = ecb_rates_load(rates=rates, source=source)
        except (EcbFileError, EcbRatesRefused) as exc:
            raise CommandError(
                f"Nothing loaded from {source}:\n" + "\n".join(exc.problems)
            ) from exc
        days = sorted({rate.published_on.isoformat() for rate in result.loaded})
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(result.loaded)} loaded ({', '.join(days) or 'no new day'}), "
                f"{len(result.already_loaded)} already loaded."
            )
        )
