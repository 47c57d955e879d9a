import json
from dataclasses import replace
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from plans.tax.rate_file import EU_VAT, RateFileEntry, rate_file_read
from plans.tax.rates import HERE
from plans.tax_rates import TaxRatesRefused, tax_rates_load

PACKAGED = (HERE / "eu_rates.json", HERE / "us_rates.json")


class Command(BaseCommand):
    help = (
        "Load dated tax rates (the shape of plans/tax/eu_rates.json and us_rates.json) into the "
        "rate table: new entries are added, entries already there skipped; changing an entry "
        "takes --correct REASON (audited). With no file, loads the packaged files."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", type=Path, help="JSON rate files.")
        parser.add_argument(
            "--correct",
            metavar="REASON",
            help="Allow changing an entry already loaded (same place and date); the reason is "
            "kept in the audit log. A new rate is a new dated entry and needs no --correct.",
        )

    def handle(self, *args, files, correct, **options):
        if correct is not None and not correct.strip():
            raise CommandError("Say why: --correct takes the reason, kept in the audit log.")
        entries = self._read(files or list(PACKAGED))
        try:
            result = tax_rates_load(entries=entries, correction_reason=correct or "")
        except TaxRatesRefused as exc:
            raise CommandError("Nothing loaded:\n" + "\n".join(exc.problems)) from exc
        for entry in result.loaded:
            self.stdout.write(f"loaded: {_describe(entry)}")
        for entry in result.already_loaded:
            self.stdout.write(f"already loaded: {_describe(entry)}")
        for entry in result.corrected:
            self.stdout.write(f"corrected: {_describe(entry)}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(result.loaded)} loaded, {len(result.already_loaded)} already loaded, "
                f"{len(result.corrected)} corrected."
            )
        )

    def _read(self, paths: list[Path]) -> list[RateFileEntry]:
        """Every file's entries; a problem anywhere and nothing is loaded (all are listed)."""
        entries: list[RateFileEntry] = []
        problems: list[str] = []
        seen: dict[tuple, str] = {}
        for path in paths:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                problems.append(f"{path}: cannot be read ({exc.strerror})")
                continue
            except json.JSONDecodeError as exc:
                problems.append(f"{path}: not JSON ({exc.msg}, line {exc.lineno})")
                continue
            found, wrong = rate_file_read(data)
            problems.extend(f"{path.name} {problem}" for problem in wrong)
            for entry in found:
                entry = replace(entry, where=f"{path.name} {entry.where}")
                key = (entry.kind, entry.code, entry.effective_from)
                if key in seen:
                    problems.append(f"{entry.where}: also in {seen[key]}")
                    continue
                seen[key] = entry.where
                entries.append(entry)
        if problems:
            raise CommandError("Nothing loaded:\n" + "\n".join(problems))
        return entries


def _describe(entry: RateFileEntry) -> str:
    what = "VAT" if entry.kind == EU_VAT else "sales tax"
    rate = format(entry.rate.normalize(), "f")
    return f"{entry.code} {what} {rate} % from {entry.effective_from.isoformat()} ({entry.source})"
