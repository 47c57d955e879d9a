"""Celery tasks of the catalog app: the ECB's daily euro reference rates (docs/tax.md)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from .ecb_gateway import EcbUnavailable, ecb_rates_fetch
from .exchange_rates import EcbRatesRefused, ecb_rates_load
from .tax.ecb_file import EcbFileError, ecb_file_read

logger = logging.getLogger(__name__)


@shared_task(name="plans.ecb_rates_fetch")
def ecb_rates_fetch_task() -> int:
    """Fetch ECB_RATES_URL and load its rates; returns how many were new. Safe to run twice
    (a day already loaded is skipped). A failure is logged and left to the next run (beat
    runs it every 6 hours): an invoice issued meanwhile converts at the latest rate loaded,
    or says the rate is unavailable once that is older than plans.tax.national.RATE_MAX_AGE."""
    url = settings.ECB_RATES_URL
    try:
        rates = ecb_file_read(ecb_rates_fetch(url=url))
        loaded = ecb_rates_load(rates=rates, source=url)
    except (EcbUnavailable, EcbFileError, EcbRatesRefused) as exc:
        logger.warning("ECB rates not loaded from %s: %s", url, exc)
        return 0
    return len(loaded.loaded)
