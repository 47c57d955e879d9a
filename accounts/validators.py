"""The input rules (`input_rules`, `countries`) as Django validators and a form field: one
validator per rule, put on the model fields (so the admin and every `full_clean` apply it), on
the API's serializer fields (DRF runs Django validators) and on the pages' and console's forms.
"""

import re
from datetime import date, datetime

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.deconstruct import deconstructible

from . import input_rules
from .countries import country_problem


@deconstructible
class PlainText:
    """Refuses control, bidirectional and invisible format characters, naming the first as
    U+XXXX; `multi_line` fields (a reason, a note) may hold line breaks and tabs."""

    def __init__(self, *, multi_line: bool = False):
        self.multi_line = multi_line

    def __call__(self, value) -> None:
        if not isinstance(value, str):
            return
        problem = input_rules.text_problem(value, multi_line=self.multi_line)
        if problem:
            raise ValidationError(problem, code="invalid_character")

    def __eq__(self, other) -> bool:
        return isinstance(other, PlainText) and other.multi_line == self.multi_line

    def __hash__(self) -> int:
        return hash((PlainText, self.multi_line))


plain_text = PlainText()
multi_line_text = PlainText(multi_line=True)


def country_code(value: str) -> None:
    """An ISO 3166-1 alpha-2 code, upper case (forms upper-case what people type first)."""
    if value:
        problem = country_problem(value)
        if problem:
            raise ValidationError(problem, code="invalid_country")


@deconstructible
class InWindow:
    """A date or an aware datetime within an `input_rules.Window` (by its name there)."""

    def __init__(self, window: str = "ANY_DATE"):
        self.window = window

    def __call__(self, value) -> None:
        rule: input_rules.Window = getattr(input_rules, self.window)
        now = timezone.now()
        if isinstance(value, datetime):
            problem = rule.problem(value, now=now)
        elif isinstance(value, date):
            problem = rule.day_problem(value, now=now)
        else:
            return
        if problem:
            raise ValidationError(problem, code="out_of_window")

    def __eq__(self, other) -> bool:
        return isinstance(other, InWindow) and other.window == self.window

    def __hash__(self) -> int:
        return hash((InWindow, self.window))


class WindowedDateField(forms.DateField):
    """A form's date, within the dates window (docs/api.md, "Input at the edge")."""

    default_validators = [InWindow()]


# A shop's permanent domain as Shopify gives it: a handle of letters, digits and hyphens, then
# .myshopify.com. A custom domain (shop.example) is not accepted: the Admin API and the
# webhooks name the shop by this one.
# The API's schema publishes the same pattern (api_fields.ShopDomainField).
SHOP_DOMAIN_PATTERN = r"[a-z0-9][a-z0-9-]{0,59}\.myshopify\.com"
_SHOP_DOMAIN = re.compile(SHOP_DOMAIN_PATTERN)


def shop_domain_valid(value: str) -> str:
    """The shop's domain in lower case, or ValidationError saying what it should look like."""
    domain = (value or "").strip().lower()
    if not _SHOP_DOMAIN.fullmatch(domain):
        raise ValidationError(
            "Give the shop's permanent domain, like 'my-store.myshopify.com'.",
            code="invalid_shop_domain",
        )
    return domain
