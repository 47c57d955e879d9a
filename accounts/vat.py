"""EU VAT ids checked offline: format and check digits, with python-stdnum (no network).

The first of the two checks of issue 25: at the edge (the details form, the partner API), a
typo is refused at once, in words, before anything is stored. Whether the id is registered is
VIES's answer, asked later by a task (billing.tax_checks) through billing.vies_gateway.
"""

import re
from dataclasses import dataclass

from stdnum import exceptions as stdnum_errors
from stdnum.eu import vat as eu_vat

from accounts.countries import EU_VAT_PREFIX

__all__ = ["VatIdCheck", "vat_id_check_offline", "vat_id_compact", "vat_id_country"]

# stdnum's reasons, in words a merchant can act on.
_REASONS: list[tuple[type[stdnum_errors.ValidationError], str]] = [
    (stdnum_errors.InvalidChecksum, "its check digits do not match: look for a mistyped digit"),
    (stdnum_errors.InvalidLength, "it has the wrong number of characters for {country}"),
    (stdnum_errors.InvalidFormat, "it is not written the way {country} writes its VAT ids"),
    (stdnum_errors.InvalidComponent, "it does not start with an EU country prefix, e.g. FR or DE"),
]


@dataclass(frozen=True)
class VatIdCheck:
    """The outcome: the id as we store it (compact, upper case), or why it was refused."""

    vat_id: str
    problem: str | None

    @property
    def is_valid(self) -> bool:
        return self.problem is None


def vat_id_compact(vat_id: str) -> str:
    """The id without spaces, dots or dashes, upper-cased: "fr 40-303.265.045" -> FR40303265045."""
    # Our own clean-up, not stdnum's compact: that one raises on a prefix it does not know,
    # and a refusal is worded once, in vat_id_check_offline.
    return re.sub(r"[\s.\-/]", "", vat_id).upper()


def vat_id_country(vat_id: str) -> str:
    """The ISO country of an EU VAT id's prefix (EL is Greece, GR); empty if none."""
    prefix = vat_id_compact(vat_id)[:2]
    for country, vat_prefix in EU_VAT_PREFIX.items():
        if vat_prefix == prefix:
            return country
    return ""


def vat_id_check_offline(vat_id: str, *, country: str = "") -> VatIdCheck:
    """Check an EU VAT id's prefix, length and check digits; `country`, when given, is the
    buyer's ISO country, which the prefix must match (django-plans' issue #127: an id without
    its prefix passed the form and failed VIES for ever after)."""
    compact = vat_id_compact(vat_id)
    if not compact:
        return VatIdCheck("", "Type the VAT id, starting with its country prefix, e.g. FR.")
    own = vat_id_country(compact)
    country = country.upper()
    if country in EU_VAT_PREFIX and own != country:
        return VatIdCheck(compact, f"A VAT id from {country} starts with {EU_VAT_PREFIX[country]}.")
    try:
        eu_vat.validate(compact)
    except stdnum_errors.ValidationError as error:
        for kind, words in _REASONS:
            if isinstance(error, kind):
                reason = words.format(country=own or "that country")
                break
        else:
            reason = "it is not a VAT id of an EU country"
        return VatIdCheck(compact, f"{compact} is not a valid VAT id: {reason}.")
    return VatIdCheck(compact, None)
