"""The rule book's ids in words, for "Why was this billed?" (docs/rules-engine.md)."""

RULES = {
    "H1": "An agent or a rule sent a public reply to the customer: the ticket is billable.",
    "H2": "A billable ticket counts once, however many messages follow.",
    "H3": "A rule's auto-reply counts, even on a ticket marked as spam.",
    "H4": "An agent forwarded the ticket out of the helpdesk: that is a response.",
    "H5": "A reply to a Facebook or Instagram comment is not billable.",
    "H6": "The customer wrote again after more than 72 hours of silence on a chat ticket: "
    "a new billing ticket started.",
    "H7": "The customer wrote through a chat campaign: billable at once, even with no reply.",
    "H8": "Self-service: billable only when the customer talked to an agent who replied.",
    "H9": "Internal notes, ticket edits or no reply at all: not billable.",
    "H10": "Voice and SMS never count as helpdesk tickets (no double counting).",
    "H11": "An AI agent's reply alone is not a helpdesk response (it is an automated interaction).",
    "V1": "A call was answered, a voicemail left, or the call forwarded outside: a voice ticket.",
    "V2": "An IVR message only, or a forward to one of your own numbers: not a second ticket.",
    "V3": "Several calls on one voice ticket count once.",
    "V4": "The same customer called again more than 72 hours later: a new voice ticket.",
    "V5": "A voicemail counts even with no follow-up.",
    "S1": "Your team or a rule sent an SMS: a billable SMS ticket.",
    "S2": "Several SMS on one ticket count once.",
    "M1": "Merging tickets never changes what was counted; each source ticket keeps its own.",
    "A1": "Resolved by automation or the AI agent with no agent within 72 hours: one automated "
    "interaction.",
    "A2": 'A reply needing no resolution ("thanks!") does not cancel it.',
    "A3": "Handed over to a human, or closed as spam: not counted.",
    "A4": "An agent or a rule answered the ticket too: within 72 hours of the automation, "
    "before or after it, only the helpdesk ticket counts; further apart, both count.",
    "A5": "Pending until its 72-hour window closes, then counted.",
    "C1": "A click on a campaign pop-up: at most 3 per browser session.",
    "C2": "Convert's limit was reached: recorded, not billed; campaigns paused until the period "
    "ends.",
    "Z1": "Counted per conversation session.",
    "Z2": "The AI agent's answer was relevant and the session resolved after 72 hours of "
    "inactivity.",
    "Z3": "The advanced AI agent's conversation passed the evaluator's check.",
    "Z4": "Escalated to a human: never counted.",
    "Z5": "Auto-reply with articles: the customer closed the request or clicked an article.",
    "Z6": "Triage auto-reply with no reply from anyone within 72 hours.",
    "Z7": "Web widget: an article was suggested and clicked, or got positive feedback.",
    "Z8": "Within the yearly allocation of automated resolutions.",
    "Z9": "Beyond the allocation or your monthly limit, with AI paused: recorded, not billed.",
    "F6": "Arrived after its period was invoiced: billed on the next invoice as late usage.",
}


def rule_words(rule_id: str) -> str:
    return RULES.get(rule_id, "")
