"""Forms of the billing pages: validation at the edge, in words the merchant can act on."""

from django import forms

from accounts.countries import country_problem
from accounts.tax_identity import tax_identity_problems, vat_id_problems
from accounts.validators import InWindow, multi_line_text, plain_text
from accounts.vat import vat_id_compact
from metering.models import SpikeGuard
from plans.models import ScheduledChange

from ..changes import CANCEL_COMMENT_MAX
from ..models import TicketDisputeReason
from ..spike_guard import SETTING_BOUNDS
from ..ticket_disputes import COMMENT_MOST


class BillingDetailsForm(forms.Form):
    billing_email = forms.EmailField(
        label="Billing email",
        help_text="Invoices, receipts and payment confirmation reminders go here.",
    )
    # Each line of the address is its own one-line field: no line breaks in any of them.
    company = forms.CharField(
        label="Legal name",
        max_length=200,
        required=False,
        validators=[plain_text],
        help_text="The company's registered name, as invoices must show it.",
    )
    address_line1 = forms.CharField(
        label="Address", max_length=200, required=False, validators=[plain_text]
    )
    address_line2 = forms.CharField(
        label="Address (line 2)", max_length=200, required=False, validators=[plain_text]
    )
    postal_code = forms.CharField(
        label="Postal code",
        max_length=20,
        required=False,
        validators=[plain_text],
        help_text="In the US, the ZIP code: 98101 or 98101-1234.",
    )
    city = forms.CharField(label="City", max_length=100, required=False, validators=[plain_text])
    country = forms.CharField(
        label="Country",
        max_length=2,
        required=False,
        help_text="Two-letter ISO code, e.g. FR, DE, US.",
    )
    us_state = forms.CharField(
        label="US state",
        max_length=2,
        required=False,
        help_text="US only: the two-letter code, e.g. WA. Sales tax depends on it.",
    )
    vat_id = forms.CharField(
        label="VAT id",
        max_length=20,
        required=False,
        help_text="With its country prefix, e.g. DE123456788. We check it with the EU's VIES.",
    )

    def clean_country(self) -> str:
        # People type "fr": the page upper-cases it (the API, for programs, takes "FR" only).
        country = self.cleaned_data["country"].strip().upper()
        problem = country_problem(country) if country else None
        if problem:
            raise forms.ValidationError(problem)
        return country

    def clean_us_state(self) -> str:
        return self.cleaned_data["us_state"].strip().upper()

    def clean_postal_code(self) -> str:
        return self.cleaned_data["postal_code"].strip()

    def clean_vat_id(self) -> str:
        return vat_id_compact(self.cleaned_data["vat_id"])

    def clean(self):
        data = super().clean()
        if "country" in self.errors:
            return data  # the rules below read the country
        country = data.get("country", "")
        problems = tax_identity_problems(
            country=country,
            us_state=data.get("us_state", ""),
            postal_code=data.get("postal_code", ""),
        )
        if "vat_id" not in self.errors:
            problems |= vat_id_problems(vat_id=data.get("vat_id", ""), country=country)
        for field, problem in problems.items():
            if field not in self.errors:
                self.add_error(field, problem)
        return data


class TicketLookupForm(forms.Form):
    ticket = forms.CharField(label="Ticket id", max_length=255, strip=True)


def _reason_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        label="Why should it not have been billed?",
        choices=[("", "Choose a reason")] + list(TicketDisputeReason.choices),
        error_messages={"required": "Choose why it should not have been billed."},
    )


def _comment_field() -> forms.CharField:
    return forms.CharField(
        label="Comment",
        max_length=COMMENT_MOST,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        validators=[multi_line_text],
        help_text="What happened, for the person who decides. Needed with “other”.",
    )


class ContestForm(forms.Form):
    """ "Contest this ticket" on the Why page (billing.ticket_disputes.ticket_dispute_open
    refuses what cannot be contested, in words shown as this form's error)."""

    ticket = forms.CharField(max_length=255, widget=forms.HiddenInput, validators=[plain_text])
    reason = _reason_field()
    comment = _comment_field()


# The browser's own date-and-time picker: "2026-11-16T09:30", read as UTC like every time the
# pages show.
_MINUTE_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


def _moment_field(label: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=False,
        input_formats=_MINUTE_FORMATS,
        validators=[InWindow()],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class ContestBulkForm(forms.Form):
    """ "Contest in bulk" on the Usage tab: every billed ticket of one requester (a mail loop)
    or billable within a time range (a spam wave)."""

    requester = forms.EmailField(
        label="Requester's email",
        required=False,
        help_text="Every billed ticket this address opened, e.g. an auto-responder.",
    )
    start = _moment_field("From (UTC)")
    end = _moment_field("To (UTC)")
    reason = _reason_field()
    comment = _comment_field()
    field_order = ["requester", "start", "end", "reason", "comment"]

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if "start" in self.errors or "end" in self.errors:
            return data
        if bool(start) != bool(end):
            self.add_error("end" if start else "start", "Give both ends of the range.")
        elif start and end and not start < end:
            self.add_error("end", "The range ends after it starts.")
        elif not (start or data.get("requester")) and "requester" not in self.errors:
            self.add_error(
                "requester", "Name a requester, or a time range (from and to), to contest."
            )
        return data


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


def _bounded(label: str, name: str, unit: str, help_text: str) -> forms.IntegerField:
    """A spike-guard number within billing.spike_guard.SETTING_BOUNDS, its default said."""
    low, high = SETTING_BOUNDS[name]
    default = getattr(SpikeGuard(), name)  # an unsaved row holds the defaults
    within = f"Between {low:,} and {high:,} {unit}."
    return forms.IntegerField(
        label=label,
        min_value=low,
        max_value=high,
        help_text=f"{help_text} Default {default:,}; {within[0].lower()}{within[1:]}",
        error_messages={
            "required": f"Give a number. {within}",
            "invalid": f"A whole number. {within}",
            "min_value": f"At least {low:,} {unit}. {within}",
            "max_value": f"At most {high:,} {unit}. {within}",
        },
    )


class SpikeGuardForm(forms.Form):
    """The Usage tab's spike-guard settings (billing.spike_guard.spike_guard_settings_save)."""

    mode = forms.ChoiceField(
        label="When usage looks wrong",
        choices=[
            ("hold", "Hold it for review: not billed until I release it (or 14 days pass)"),
            ("alert_only", "Alert only: bill it, but tell me"),
        ],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose hold or alert only."},
    )
    loop_tickets = _bounded(
        "Loop: more than this many tickets",
        "loop_tickets",
        "tickets",
        "From one requester, or on one subject…",
    )
    loop_minutes = _bounded(
        "…within this many minutes", "loop_minutes", "minutes", "The loop's window."
    )
    anomaly_multiplier = _bounded(
        "Spike: a day above this many times its usual volume…",
        "anomaly_multiplier",
        "times",
        "The usual: the median of the same weekdays of the last 4 to 8 weeks.",
    )
    anomaly_margin = _bounded(
        "…and this many units above it",
        "anomaly_margin",
        "units",
        "So a quiet account's small days do not trip it.",
    )


class HeldDecisionForm(forms.Form):
    """Release or exclude held units: a spike (`anomaly`) or a loop's holds (`hold`: the oldest
    of the group, which is every active loop hold with its reason)."""

    decision = forms.ChoiceField(choices=[("release", "Release"), ("exclude", "Exclude")])
    anomaly = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    hold = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if bool(data.get("anomaly")) == bool(data.get("hold")):
            raise forms.ValidationError("Choose one spike or one group of held tickets.")
        return data
