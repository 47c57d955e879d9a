"""The buyer's tax identity at the edge (issue 25, item 2): the rules the billing details form,
the partner API and the details service share, each answer in words a merchant can act on.

- A US buyer names its state (sales tax is owed, or not, state by state) and a ZIP code
  (5 digits or ZIP+4); a buyer outside the US names no state.
- An EU VAT id starts with the buyer's country prefix and has the right check digits (offline,
  python-stdnum); VIES is asked later, by billing.tax_checks.
- `tax_id_status_for(vat_id)`: what a new or changed id starts as, `pending` while VIES is
  asked, `unchecked` when there is nothing for VIES to check.
"""

import re

import pycountry

from .countries import EU_VAT_PREFIX
from .models import TaxIdStatus
from .vat import vat_id_check_offline, vat_id_compact, vat_id_country

__all__ = [
    "US_STATES",
    "tax_id_status_for",
    "tax_identity_problems",
    "vat_id_problems",
]

# The 50 states and DC (ISO 3166-2:US): where a state sales tax can be owed. The outlying
# areas (PR, GU, VI, ...) have their own ISO country codes and are given as a country.
US_STATES = frozenset(
    sub.code.removeprefix("US-")
    for sub in pycountry.subdivisions.get(country_code="US")
    if sub.type in ("State", "District")
)

_ZIP = re.compile(r"^\d{5}(-\d{4})?\Z")
# Our shape check before stdnum's: two letters, then 2 to 13 letters or digits.
_VAT_SHAPE = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}\Z")


def tax_identity_problems(*, country: str, us_state: str, postal_code: str) -> dict[str, str]:
    """What is wrong with the country, US state and ZIP taken together, per field (empty:
    nothing). Codes are compared as given: callers upper-case what people type."""
    problems: dict[str, str] = {}
    if country == "US":
        if not us_state:
            problems["us_state"] = "Give the US state, e.g. WA: sales tax depends on it."
        elif us_state not in US_STATES:
            problems["us_state"] = (
                f"“{us_state}” is not a US state: give its two-letter code, e.g. WA, NY or DC."
            )
        if postal_code and not _ZIP.match(postal_code):
            problems["postal_code"] = "A US ZIP code is 5 digits, or ZIP+4: 98101 or 98101-1234."
    elif us_state:
        problems["us_state"] = "A US state goes with the country US only: leave it empty."
    return problems


def vat_id_problems(*, vat_id: str, country: str) -> dict[str, str]:
    """What is wrong with a VAT id (already compact) for a buyer in `country`, per field."""
    if not vat_id:
        return {}
    if not _VAT_SHAPE.match(vat_id):
        return {
            "vat_id": "A VAT id is a two-letter country prefix then 2 to 13 letters or digits, "
            "e.g. FR40303265045."
        }
    if not country:
        return {"country": "Give the country that goes with the VAT id."}
    if country in EU_VAT_PREFIX and not vat_id.startswith(EU_VAT_PREFIX[country]):
        return {"vat_id": f"A VAT id from {country} starts with {EU_VAT_PREFIX[country]}."}
    if vat_id_country(vat_id):
        # An EU id's length and check digits, checked at once, offline (VIES comes later).
        problem = vat_id_check_offline(vat_id).problem
        if problem:
            return {"vat_id": problem}
    return {}


def tax_id_status_for(vat_id: str) -> TaxIdStatus:
    """The status a new or changed VAT id starts with: VIES is asked about EU ids only."""
    if vat_id and vat_id_country(vat_id_compact(vat_id)):
        return TaxIdStatus.PENDING
    return TaxIdStatus.UNCHECKED
