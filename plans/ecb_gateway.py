"""The ECB adapter: the day's euro reference rates file, fetched from ECB_RATES_URL. The only
module that asks the ECB; the demo and the tests point ECB_RATES_URL at the loopback stand-in
(scripts/vies_standin.py serves the file), and nothing else reaches the internet."""

from __future__ import annotations

import requests
from django.conf import settings


class EcbUnavailable(Exception):
    """The file could not be fetched (network, HTTP status): try again at the next run."""


def ecb_rates_fetch(*, url: str = "") -> bytes:
    """The rates file's bytes (eurofxref-daily.xml), from `url` or ECB_RATES_URL."""
    url = url or settings.ECB_RATES_URL
    try:
        response = requests.get(url, timeout=settings.ECB_TIMEOUT_SECONDS)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise EcbUnavailable(f"{url}: {exc}") from exc
    return response.content
