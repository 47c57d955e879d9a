"""ISO 3166-1 alpha-2 country codes, and the VAT-number prefixes of the EU.

The codes come from pycountry (Debian's iso-codes data, which follows the ISO 3166 Maintenance
Agency): a code ISO adds or withdraws arrives with a dependency update, not a hand edit. The EU
VAT prefixes are ours: they are a tax rule, not part of ISO 3166.
"""

import pycountry

COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)


def _user_assigned() -> frozenset[str]:
    """AA, QM–QZ, XA–XZ and ZZ: ISO leaves them to private use (XK for Kosovo, ZZ for
    "unknown" in many systems); they name no country, so an invoice cannot carry one."""
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    return frozenset(
        ["AA", "ZZ"] + [f"Q{x}" for x in letters if x >= "M"] + [f"X{x}" for x in letters]
    )


USER_ASSIGNED = _user_assigned()


def country_problem(code: str) -> str | None:
    """Why `code` (as given, case included) is not an ISO 3166-1 alpha-2 country; or None."""
    if code in COUNTRY_CODES:
        return None
    if code.upper() in COUNTRY_CODES:
        return f"Country codes are upper case: “{code.upper()}”, not “{code}”."
    if code.upper() in USER_ASSIGNED:
        return (
            f"“{code.upper()}” is a user-assigned code, not a country: give the ISO 3166-1 "
            "alpha-2 code of the country, e.g. FR, DE, US."
        )
    return f"“{code}” is not an ISO 3166-1 alpha-2 country code: use two letters, e.g. FR or US."


# An EU VAT id starts with its country's prefix; Greece writes EL, not GR.
EU_VAT_PREFIX = {
    code: ("EL" if code == "GR" else code)
    for code in [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
}
