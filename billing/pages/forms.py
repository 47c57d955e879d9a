"""Forms of the billing pages: validation at the edge, in words the merchant can act on."""

import re

from django import forms

from accounts.countries import EU_VAT_PREFIX, country_problem
from accounts.validators import plain_text
from accounts.vat import vat_id_check_offline, vat_id_country
from plans.models import ScheduledChange

from ..changes import CANCEL_COMMENT_MAX

_VAT = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}$")


class BillingDetailsForm(forms.Form):
    billing_email = forms.EmailField(
        label="Billing email",
        help_text="Invoices, receipts and payment confirmation reminders go here.",
    )
    # Each line of the address is its own one-line field: no line breaks in any of them.
    company = forms.CharField(
        label="Company", max_length=200, required=False, validators=[plain_text]
    )
    address_line1 = forms.CharField(
        label="Address", max_length=200, required=False, validators=[plain_text]
    )
    address_line2 = forms.CharField(
        label="Address (line 2)", max_length=200, required=False, validators=[plain_text]
    )
    postal_code = forms.CharField(
        label="Postal code", max_length=20, required=False, validators=[plain_text]
    )
    city = forms.CharField(label="City", max_length=100, required=False, validators=[plain_text])
    country = forms.CharField(
        label="Country",
        max_length=2,
        required=False,
        help_text="Two-letter ISO code, e.g. FR, DE, US.",
    )
    vat_id = forms.CharField(label="VAT id", max_length=20, required=False)

    def clean_country(self) -> str:
        # People type "fr": the page upper-cases it (the API, for programs, takes "FR" only).
        country = self.cleaned_data["country"].strip().upper()
        problem = country_problem(country) if country else None
        if problem:
            raise forms.ValidationError(problem)
        return country

    def clean_vat_id(self) -> str:
        vat = re.sub(r"[\s.\-]", "", self.cleaned_data["vat_id"]).upper()
        if vat and not _VAT.match(vat):
            raise forms.ValidationError(
                "A VAT id is a two-letter country prefix then 2 to 13 letters or digits, "
                "e.g. FR40303265045."
            )
        return vat

    def clean(self):
        data = super().clean()
        vat, country = data.get("vat_id"), data.get("country")
        if vat and not country and "country" not in self.errors:
            self.add_error("country", "Give the country that goes with the VAT id.")
        elif vat and country in EU_VAT_PREFIX and not vat.startswith(EU_VAT_PREFIX[country]):
            self.add_error(
                "vat_id",
                f"A VAT id from {country} starts with {EU_VAT_PREFIX[country]}.",
            )
        elif vat and vat_id_country(vat):
            # An EU id's length and check digits, checked at once, offline (VIES comes later).
            problem = vat_id_check_offline(vat).problem
            if problem:
                self.add_error("vat_id", problem)
        return data


class TicketLookupForm(forms.Form):
    ticket = forms.CharField(label="Ticket id", max_length=255, strip=True)


class AiLimitsForm(forms.Form):
    """Z9: keep running (overage) or pause AI at the limit, and an own monthly limit."""

    at_limit = forms.ChoiceField(
        label="At the limit",
        choices=[
            ("keep", "Keep AI running; resolutions beyond the limit are billed as overage"),
            ("pause", "Pause AI features until the allocation renews"),
        ],
        widget=forms.RadioSelect,
    )
    monthly_limit = forms.IntegerField(
        label="Your own monthly limit",
        min_value=1,
        max_value=1_000_000,
        required=False,
        help_text="Leave empty for none. Reaching it pauses AI features until next month.",
    )


class CancelForm(forms.Form):
    """The cancellation's confirmation: why, if the merchant wants to say (both optional)."""

    reason = forms.ChoiceField(
        label="Why are you cancelling?",
        choices=ScheduledChange.Reason.choices,
        widget=forms.RadioSelect,
        required=False,
    )
    comment = forms.CharField(
        label="Anything we could have done better?",
        max_length=CANCEL_COMMENT_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
