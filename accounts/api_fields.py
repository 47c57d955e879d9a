"""Serializer pieces shared by every app's API."""

import re
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import pagination, serializers

from . import input_rules
from .countries import COUNTRY_CODES, country_problem
from .tax_identity import US_STATES
from .validators import SHOP_DOMAIN_PATTERN, plain_text

_SHOP_DOMAIN = re.compile(SHOP_DOMAIN_PATTERN)


class AwareDateTimeField(serializers.DateTimeField):
    """RFC 3339 with an offset (a naive timestamp is ambiguous and refused), within a dates
    window of `input_rules` (by default from 2000 to five years ahead; the schema says which)."""

    default_error_messages = {
        "naive": "Give the time zone offset (RFC 3339), e.g. 2026-11-01T09:30:00Z.",
        "out_of_window": "{problem}",
    }

    def __init__(self, *, window: input_rules.Window = input_rules.ANY_DATE, **kwargs):
        self.window = window
        kwargs.setdefault("help_text", f"RFC 3339 with an offset, {window.describe()}.")
        super().__init__(**kwargs)
        # DRF's words for a time past year 9999 in UTC (9999-12-31T23:59:59-01:00).
        self.error_messages["overflow"] = (
            f"Out of range: the accepted window is {window.describe()}."
        )

    def to_internal_value(self, value):
        if isinstance(value, str) and not _has_offset(value):
            self.fail("naive")
        parsed = super().to_internal_value(value)
        problem = self.window.problem(parsed, now=timezone.now())
        if problem:
            self.fail("out_of_window", problem=problem)
        return parsed


def _has_offset(value: str) -> bool:
    tail = value.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


# The schema lists the codes as a plain enum (not a component whose description repeats each).
@extend_schema_field(
    {
        "type": "string",
        "enum": ["", *sorted(COUNTRY_CODES)],
        "description": 'ISO 3166-1 alpha-2, upper case, e.g. FR; "" for none.',
    }
)
class CountryField(serializers.ChoiceField):
    """An ISO 3166-1 alpha-2 code in upper case, or "" for none. The API takes the code as
    written (the schema lists every code); a lower-case code is refused with the code to send."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", 'ISO 3166-1 alpha-2, upper case, e.g. FR; "" for none.')
        super().__init__(choices=[""] + sorted(COUNTRY_CODES), **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and data and data not in COUNTRY_CODES:
            raise serializers.ValidationError(country_problem(data), code="invalid_country")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "string",
        "enum": ["", *sorted(US_STATES)],
        "description": "A US state or DC, two letters, upper case, e.g. WA; required with country "
        'US, "" otherwise.',
    }
)
class UsStateField(serializers.ChoiceField):
    """A US state's two-letter code (the 50 and DC), or "" for none; taken as written, like the
    country. That it goes with the country US is checked with the country."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", 'A US state or DC, e.g. WA; "" for none.')
        super().__init__(choices=["", *sorted(US_STATES)], **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and data and data not in US_STATES:
            raise serializers.ValidationError(
                f"“{data}” is not a US state: give its two-letter code in upper case, e.g. WA.",
                code="invalid_us_state",
            )
        return super().to_internal_value(data)


class _JsonStringOnly:
    """DRF's text fields take a number for its digits (12 as "12"); the schema says string,
    so the API does too (Schemathesis found `"slug": 0` accepted)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(_JsonStringOnly, serializers.CharField):
    """A CharField that takes a JSON string only (a token, a code)."""


class TextField(_JsonStringOnly, serializers.CharField):
    """Text people read back (a name, a company, a description): a JSON string without
    control, bidirectional or invisible characters (`validators.plain_text`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(plain_text)


class WholeNumberField(serializers.IntegerField):
    """A JSON integer: DRF's IntegerField also takes "5" and 5.0; the schema says integer."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class LowerSlugField(_JsonStringOnly, serializers.SlugField):
    """An account slug: letters, digits, '-' and '_'; kept in lower case, so 'Bloom' and
    'bloom' are one slug (docs/api.md, "Account slugs")."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text", "Letters, digits, '-' and '_'; stored in lower case ('Bloom' is 'bloom')."
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data).lower()


# The schema carries the validator's pattern, so a fuzzer (or a client's own check) draws only
# domains the API takes; JSON Schema's pattern is a search, hence the anchors.
@extend_schema_field(
    {
        "type": "string",
        "pattern": f"^{SHOP_DOMAIN_PATTERN}$",
        "description": "The shop's permanent domain, in lower case: 'my-store.myshopify.com'.",
    }
)
class ShopDomainField(_JsonStringOnly, serializers.CharField):
    """A shop's permanent domain exactly as Shopify writes it (lower case, no spaces): what
    the schema's pattern says, no more (a domain the API lowered or trimmed would be one the
    schema refuses)."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text", "The shop's permanent domain, in lower case: 'my-store.myshopify.com'."
        )
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not _SHOP_DOMAIN.fullmatch(value):
            raise serializers.ValidationError(
                "Give the shop's permanent domain in lower case, like 'my-store.myshopify.com'.",
                code="invalid_shop_domain",
            )
        return value


def money(amount_minor: int | Decimal, currency: str) -> dict:
    """The API's money object: integer minor units; sub-cent unit prices as a decimal string."""
    value = Decimal(amount_minor)
    if value == value.to_integral_value():
        return {"amount": int(value), "currency": currency}
    return {"amount_decimal": str(value.normalize()), "currency": currency}


class NewestFirstPagination(pagination.CursorPagination):
    """Lists are newest first and paginated with `?cursor=` (api.md, Conventions)."""

    ordering = ("-created_at", "-pk")
    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"
