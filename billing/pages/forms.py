"""Forms of the billing pages: validation at the edge, in words the merchant can act on."""

import re

from django import forms

from accounts.countries import COUNTRY_CODES, EU_VAT_PREFIX

_VAT = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}$")


class BillingDetailsForm(forms.Form):
    billing_email = forms.EmailField(
        label="Billing email",
        help_text="Invoices, receipts and payment confirmation reminders go here.",
    )
    company = forms.CharField(label="Company", max_length=200, required=False)
    address_line1 = forms.CharField(label="Address", max_length=200, required=False)
    address_line2 = forms.CharField(label="Address (line 2)", max_length=200, required=False)
    postal_code = forms.CharField(label="Postal code", max_length=20, required=False)
    city = forms.CharField(label="City", max_length=100, required=False)
    country = forms.CharField(
        label="Country",
        max_length=2,
        required=False,
        help_text="Two-letter ISO code, e.g. FR, DE, US.",
    )
    vat_id = forms.CharField(label="VAT id", max_length=20, required=False)

    def clean_country(self) -> str:
        country = self.cleaned_data["country"].strip().upper()
        if country and country not in COUNTRY_CODES:
            raise forms.ValidationError(
                f"“{country}” is not a country code: use two letters, e.g. FR or US."
            )
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
