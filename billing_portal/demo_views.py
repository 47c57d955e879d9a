"""The demo's sent-mail page: what the portal would have emailed, read from the mail folder.

Only a DEBUG portal writing mail to files (the embedded demo) answers; anywhere else it is a 404,
because real mail goes to real inboxes and lists of it are nobody's business. Times are the demo
clock's (billing_portal/demo_mail.py stamps each message with it), so that an email sits beside
the invoice it speaks of; a message written without the stamp shows its real `Date:`, said so.
"""

from datetime import timedelta
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.mail.backends import filebased
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.utils.module_loading import import_string

from billing_portal import demo_clock
from billing_portal.demo_mail import DEMO_DATE_HEADER

# Django's file backend appends each message to the file followed by this line.
_SEPARATOR = b"\n" + b"-" * 79 + b"\n"
_SHOWN = 100


def _messages(folder: Path) -> list[dict]:
    found = []
    for path in folder.glob("*.log"):
        for raw in path.read_bytes().split(_SEPARATOR):
            if not raw.strip():
                continue
            message = message_from_bytes(raw.lstrip(), policy=policy.default)
            body = message.get_body(preferencelist=("plain", "html"))
            demo_date = message[DEMO_DATE_HEADER]
            date = demo_date or message["Date"]
            found.append(
                {
                    "sent_at": parsedate_to_datetime(date) if date else None,
                    "on_demo_clock": bool(demo_date),
                    "to": message["To"],
                    "subject": message["Subject"],
                    "body": body.get_content() if body else "",
                    "file": path.name,
                }
            )
    found.sort(key=lambda item: (item["sent_at"] is not None, item["sent_at"]), reverse=True)
    return found[:_SHOWN]


@login_required
def sent_mail(request):
    file_based = issubclass(import_string(settings.EMAIL_BACKEND), filebased.EmailBackend)
    if not (settings.DEBUG and file_based):
        raise Http404
    folder = Path(settings.EMAIL_FILE_PATH)
    messages = _messages(folder) if folder.is_dir() else []
    clock_moved = abs(timezone.now() - demo_clock.real_now()) > timedelta(minutes=1)
    return render(
        request,
        "demo/mail.html",
        {"mails": messages, "folder": folder, "now": timezone.now(), "clock_moved": clock_moved},
    )
