"""The VIES adapter: is an EU VAT id registered? The only module that talks to VIES.

VIES (the EU's VAT Information Exchange System) is asked through its REST API, `POST
{VIES_API_URL}/check-vat-number` with JSON, rather than the SOAP `checkVatService`: the same
answer (valid, name, address, the consultation number `requestIdentifier` when we name
ourselves as requester), with `requests`, which the portal already uses, instead of a SOAP
client (zeep) and its WSDL to fetch or vendor. docs/tax.md has the request and answer shapes;
scripts/vies_standin.py speaks them for the demo and the tests.

An answer is one of three outcomes. `valid` and `invalid` are VIES's word on the id.
`unavailable` is everything else: a member state's service down (MS_UNAVAILABLE), VIES busy
(..._MAX_CONCURRENT_REQ), a time-out, an HTTP error, an answer we cannot read. The caller keeps
its last good answer then and asks again later (billing.tax_checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

from accounts.vat import vat_id_compact

logger = logging.getLogger(__name__)

VALID = "valid"
INVALID = "invalid"
UNAVAILABLE = "unavailable"

# VIES's error codes that are about the question, not the service: the id is refused for good.
_REFUSALS = {"INVALID_INPUT"}


@dataclass(frozen=True)
class ViesAnswer:
    """What VIES said: the outcome, and for a valid id the evidence we keep."""

    outcome: str
    name: str = ""
    address: str = ""
    consultation: str = ""  # VIES's requestIdentifier: the proof of the check, for an audit
    request_date: str = ""
    reason: str = ""  # why the answer is `unavailable` (VIES's error code, or ours)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def _shown(value: object) -> str:
    # VIES answers "---" where a member state does not disclose the name or address.
    text = str(value or "").strip()
    return "" if text == "---" else text


def _errors(body: dict[str, Any]) -> list[str]:
    return [str(e.get("error", "")) for e in body.get("errorWrappers") or [] if isinstance(e, dict)]


def vies_check(*, vat_id: str, requester_vat_id: str = "") -> ViesAnswer:
    """Ask VIES whether `vat_id` (with its country prefix) is registered; never raises for an
    outage: that is the `unavailable` outcome."""
    compact = vat_id_compact(vat_id)
    payload: dict[str, str] = {"countryCode": compact[:2], "vatNumber": compact[2:]}
    requester = vat_id_compact(requester_vat_id)
    if requester:
        # Naming ourselves makes VIES return a consultation number, the evidence we keep.
        payload["requesterMemberStateCode"] = requester[:2]
        payload["requesterNumber"] = requester[2:]
    url = f"{settings.VIES_API_URL.rstrip('/')}/check-vat-number"
    try:
        response = requests.post(url, json=payload, timeout=settings.VIES_TIMEOUT_SECONDS)
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        logger.warning("VIES unreachable for %s: %s", compact, error)
        return ViesAnswer(UNAVAILABLE, reason=type(error).__name__)
    if not isinstance(body, dict):
        return ViesAnswer(UNAVAILABLE, reason=f"HTTP {response.status_code}")
    errors = _errors(body)
    if errors or body.get("actionSucceed") is False or response.status_code >= 400:
        # VIES reports its own failures in the body, sometimes with 200.
        if errors and set(errors) <= _REFUSALS:
            return ViesAnswer(INVALID, reason=",".join(errors), raw=body)
        reason = ",".join(errors) or f"HTTP {response.status_code}"
        logger.warning("VIES could not answer for %s: %s", compact, reason)
        return ViesAnswer(UNAVAILABLE, reason=reason, raw=body)
    if "valid" not in body:
        return ViesAnswer(UNAVAILABLE, reason="no 'valid' in the answer", raw=body)
    return ViesAnswer(
        VALID if body["valid"] is True else INVALID,
        name=_shown(body.get("name")),
        address=_shown(body.get("address")),
        consultation=str(body.get("requestIdentifier") or ""),
        request_date=str(body.get("requestDate") or ""),
        raw=body,
    )
