"""The demo's mail backend: Django's file backend, each message stamped with the demo's time.

Django dates a message (`Date:`) by the wall clock, so after `make demo-advance` the sent-mail
page showed the real day beside invoices dated a month later. The time on the demo clock when
the message was written goes into a header of its own; the page shows it, labelled as the
demo's time. `Date:` keeps the real time, as a real mail server would have seen it.
"""

from email.utils import format_datetime

from django.core.mail import EmailMessage
from django.core.mail.backends import filebased
from django.utils import timezone

DEMO_DATE_HEADER = "X-Demo-Clock"


class EmailBackend(filebased.EmailBackend):
    def write_message(self, message: EmailMessage) -> None:
        message.extra_headers[DEMO_DATE_HEADER] = format_datetime(timezone.now())
        super().write_message(message)
