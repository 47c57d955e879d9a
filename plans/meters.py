"""The meter vocabulary (billing-rules.md, section 1): each meter's code and the one label a
merchant reads for it, on the Usage tab, invoice lines, emails and the console.

Pure: the rules engine (metering.rules), the pricing rules, the models' choices and the pages
all import it, so a meter is named in one place.
"""

HELPDESK_TICKETS = "helpdesk_tickets"
AUTOMATED_INTERACTIONS = "automated_interactions"
VOICE_TICKETS = "voice_tickets"
SMS_TICKETS = "sms_tickets"
CONVERT_CLICKS = "convert_clicks"
AUTOMATED_RESOLUTIONS = "automated_resolutions"

# In the rule book's order, which is the order every page lists them in.
LABELS = {
    HELPDESK_TICKETS: "helpdesk tickets",
    AUTOMATED_INTERACTIONS: "automated interactions",
    VOICE_TICKETS: "voice tickets",
    SMS_TICKETS: "SMS tickets",
    CONVERT_CLICKS: "Convert clicks",
    AUTOMATED_RESOLUTIONS: "automated resolutions",
}
METERS = tuple(LABELS)


def meter_label(meter: str) -> str:
    """The meter's label; a code we do not know (an old row, a typo) reads as its words."""
    return LABELS.get(meter, meter.replace("_", " "))


def meter_heading(meter: str) -> str:
    """The label starting a sentence or a heading: "Helpdesk tickets", "SMS tickets" (only
    the first letter changes, so "SMS" and "Convert" keep their capitals)."""
    label = meter_label(meter)
    return label[:1].upper() + label[1:]
