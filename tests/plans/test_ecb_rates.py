"""The ECB exchange rate table (plans.ExchangeRate; docs/tax.md "VAT in euros"): seeded from
the packaged file; `manage.py ecb_rates_load` loads a file or URL in ECB's format, audited,
skipping days already there and refusing a malformed file or a changed rate whole; the daily
task fetches ECB_RATES_URL (the VIES stand-in serves ECB's file) and never raises."""

import logging
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEntry
from plans.models import ExchangeRate
from plans.selectors import ecb_rate_on
from plans.tasks import ecb_rates_fetch_task
from plans.tax.national import EcbRate
from tests.plans.test_tax_national import ecb_xml

pytestmark = pytest.mark.django_db

DEC_4 = (
    "<Cube time='2026-12-04'><Cube currency='USD' rate='1.0856'/>"
    "<Cube currency='GBP' rate='0.8391'/></Cube>"
)
DEC_3 = "<Cube time='2026-12-03'><Cube currency='USD' rate='1.0849'/></Cube>"


def load(*args) -> str:
    out = StringIO()
    call_command("ecb_rates_load", *args, stdout=out)
    return out.getvalue()


def xml_file(tmp_path, days: str, name="eurofxref-daily.xml") -> str:
    path = tmp_path / name
    path.write_text(ecb_xml(days))
    return str(path)


def loaded() -> set[tuple]:
    return set(
        ExchangeRate.objects.exclude(published_on=date(2024, 6, 28)).values_list(
            "published_on", "currency", "units_per_eur"
        )
    )


def test_the_seed_is_the_packaged_day_of_rates():
    seeded = ExchangeRate.objects.filter(published_on=date(2024, 6, 28))
    assert seeded.count() == 30
    assert seeded.get(currency="USD").units_per_eur == Decimal("1.0705")


def test_a_file_is_loaded_and_each_new_rate_audited(tmp_path):
    path = xml_file(tmp_path, DEC_4 + DEC_3)
    out = load(path)
    assert "3 loaded (2026-12-03, 2026-12-04), 0 already loaded." in out
    assert loaded() == {
        (date(2026, 12, 4), "USD", Decimal("1.0856")),
        (date(2026, 12, 4), "GBP", Decimal("0.8391")),
        (date(2026, 12, 3), "USD", Decimal("1.0849")),
    }
    assert ExchangeRate.objects.get(currency="GBP", published_on=date(2026, 12, 4)).source == path
    audits = AuditEntry.objects.filter(action="exchange_rate.load")
    assert audits.count() == 3
    usd = audits.get(object_label="USD 2026-12-04")
    assert usd.after == {
        "currency": "USD",
        "published_on": "2026-12-04",
        "units_per_eur": "1.0856",
        "source": path,
    }


def test_loading_a_file_twice_changes_nothing(tmp_path):
    path = xml_file(tmp_path, DEC_4)
    load(path)
    assert "0 loaded (no new day), 2 already loaded." in load(path)
    assert AuditEntry.objects.filter(action="exchange_rate.load").count() == 2


def test_a_malformed_file_loads_nothing_and_says_why(tmp_path):
    bad = DEC_3 + "<Cube time='2026-12-04'><Cube currency='USD' rate='1,0856'/></Cube>"
    with pytest.raises(CommandError) as refused:
        load(xml_file(tmp_path, bad))
    assert "Nothing loaded from" in str(refused.value)
    assert "2026-12-04 USD: rate '1,0856' is not a positive number" in str(refused.value)
    assert loaded() == set()  # not even 2026-12-03's good rate
    path = tmp_path / "page.html"
    path.write_text("<html><body>Service unavailable")
    with pytest.raises(CommandError, match="not an ECB rates file"):
        load(str(path))
    with pytest.raises(CommandError, match="cannot|No such file"):
        load(str(tmp_path / "missing.xml"))
    assert not AuditEntry.objects.filter(action="exchange_rate.load").exists()


def test_a_file_changing_a_published_rate_is_refused_whole(tmp_path):
    load(xml_file(tmp_path, DEC_4))
    changed = "<Cube time='2026-12-04'><Cube currency='USD' rate='1.0900'/></Cube>"
    with pytest.raises(CommandError) as refused:
        load(xml_file(tmp_path, changed + DEC_3, name="other.xml"))
    assert "2026-12-04 USD: 1.0900 in the file, 1.0856 loaded" in str(refused.value)
    assert (date(2026, 12, 3), "USD", Decimal("1.0849")) not in loaded()


def test_the_lookup_takes_the_latest_rate_published_on_or_before_the_day(tmp_path):
    load(xml_file(tmp_path, DEC_4 + DEC_3))
    assert ecb_rate_on(currency="USD", on=date(2026, 12, 6)) == EcbRate(
        "USD", Decimal("1.0856"), date(2026, 12, 4)
    )
    assert ecb_rate_on(currency="USD", on=date(2026, 12, 3)).units_per_eur == Decimal("1.0849")
    assert ecb_rate_on(currency="GBP", on=date(2026, 12, 3)).published_on == date(2024, 6, 28)
    assert ecb_rate_on(currency="USD", on=date(2024, 6, 27)) is None
    assert ecb_rate_on(currency="XXX", on=date(2026, 12, 6)) is None


# --- The daily task, against the stand-in ------------------------------------------------------


def test_the_daily_task_loads_the_file_the_stand_in_serves(vies_standin, settings):
    assert vies_standin.ecb_url == settings.ECB_RATES_URL
    vies_standin.ecb_serve(ecb_xml(DEC_4))
    assert ecb_rates_fetch_task.delay().get() == 2
    assert loaded() == {
        (date(2026, 12, 4), "USD", Decimal("1.0856")),
        (date(2026, 12, 4), "GBP", Decimal("0.8391")),
    }
    assert ExchangeRate.objects.filter(source=vies_standin.ecb_url).count() == 2
    assert ecb_rates_fetch_task.delay().get() == 0  # run twice: nothing more


def test_the_stand_in_serves_the_packaged_rates_dated_to_its_last_weekday(vies_standin):
    assert ecb_rates_fetch_task.delay().get() == 30
    (day,) = set(
        ExchangeRate.objects.filter(source=vies_standin.ecb_url).values_list(
            "published_on", flat=True
        )
    )
    assert day.weekday() < 5
    assert ExchangeRate.objects.get(source=vies_standin.ecb_url, currency="USD").units_per_eur == (
        Decimal("1.0705")
    )


@pytest.mark.parametrize(
    ("status", "text", "logged"),
    [
        (503, "<html>Service Unavailable</html>", "503"),
        (200, "<html>Maintenance</html>", 'no <Cube time="…"> day'),
    ],
)
def test_a_failed_fetch_is_logged_and_loads_nothing(vies_standin, caplog, status, text, logged):
    vies_standin.ecb_serve(text, status=status)
    with caplog.at_level(logging.WARNING, logger="plans.tasks"):
        assert ecb_rates_fetch_task.delay().get() == 0
    assert loaded() == set()
    assert "ECB rates not loaded from" in caplog.text and logged in caplog.text


def test_with_the_ecb_unreachable_the_task_logs_and_returns(caplog):
    # Without the stand-in fixture ECB_RATES_URL is a closed loopback port (tests/conftest.py).
    with caplog.at_level(logging.WARNING, logger="plans.tasks"):
        assert ecb_rates_fetch_task.delay().get() == 0
    assert "ECB rates not loaded" in caplog.text


def test_the_command_loads_from_a_url(vies_standin):
    vies_standin.ecb_serve(ecb_xml(DEC_3))
    assert "1 loaded (2026-12-03)" in load(vies_standin.ecb_url)
