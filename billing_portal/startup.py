"""Checks made when a process that serves requests or runs tasks starts (not for every
management command: `makemigrations` or `collectstatic` sign nothing).

Where each process calls them, before it serves or consumes anything (docs/deploy.md):
gunicorn's master (deploy/gunicorn.conf.py) and any WSGI/ASGI server importing the application
(wsgi.py, asgi.py); `manage.py runserver`/`testserver` (manage.py); a Celery worker (a bootstep
of billing_portal/celery.py, built before the pool or the broker connection) and beat (its
scheduler, billing_portal/beat.py). Celery signals would not do: Celery logs a receiver's
exception and starts anyway.

Two refusals: a weak SECRET_KEY without DEBUG (before the apps load: it needs only the
settings), and an incomplete or malformed seller, DEBUG or not (after: billing.tax_checks
imports models).
"""

import django
from django.apps import apps
from django.conf import settings
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured


def secret_key_weakness(key: str) -> str | None:
    """Why Django's `check --deploy` (security.W009) would flag `key`, or None when it would
    not: the same thresholds (Django's own constants), in words an operator can act on."""
    if not key:
        return "is unset"
    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return (
            f"starts with {SECRET_KEY_INSECURE_PREFIX!r} (the demo's key, used when SECRET_KEY is "
            "unset, or one Django generated for development)"
        )
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"has {len(key)} characters (at least {SECRET_KEY_MIN_LENGTH} are needed)"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return (
            f"has {len(set(key))} distinct characters "
            f"(at least {SECRET_KEY_MIN_UNIQUE_CHARACTERS} are needed)"
        )
    return None


def refuse_insecure_secret_key() -> None:
    """Anything signed with a known or guessable key (payment confirmation links, sessions,
    password reset links) could be forged: without DEBUG, no server or worker starts with one."""
    if settings.DEBUG:
        return  # the local demo runs on its known key
    try:
        keys = {"SECRET_KEY": settings.SECRET_KEY}
    except ImproperlyConfigured:  # Django refuses an empty SECRET_KEY when it is read
        keys = {"SECRET_KEY": ""}
    # An old key kept for rotation still validates signatures: it must be as strong.
    for index, old in enumerate(getattr(settings, "SECRET_KEY_FALLBACKS", [])):
        keys[f"SECRET_KEY_FALLBACKS[{index}]"] = old
    for name, key in keys.items():
        weakness = secret_key_weakness(key)
        if weakness:
            raise ImproperlyConfigured(
                f"{name} {weakness} while DEBUG is false: set it to a long random value, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (see "
                ".env.example), or DEBUG=true for the local demo."
            )


def exit_on_insecure_secret_key() -> None:
    """For a command's entry point: the refusal as one line on stderr and exit status 1, with
    no traceback to read through."""
    try:
        refuse_insecure_secret_key()
    except ImproperlyConfigured as refused:
        raise SystemExit(f"Refusing to start: {refused}") from None


def refuse_incomplete_seller() -> None:
    """Every invoice and credit note prints the seller and decides its tax from it (issue 25):
    no server or worker starts with TAX_SELLER_* incomplete or malformed, DEBUG or not (the
    demo's seller, the settings' default, passes). The problems are the system check's
    (tax.E001...), read without a database: registered US states are checked against the
    packaged rate file, which is what a fresh database holds. Loads the apps if the process
    has not yet."""
    if not apps.ready:
        # gunicorn's master and manage.py call this before Django is set up; a Celery worker
        # or beat has usually been set up by Celery's Django fix-up already.
        django.setup()
    from billing.tax_checks import seller_problems

    problems = seller_problems(databases=None)
    if problems:
        # One line whatever the settings hold (a VAT id is echoed as it was typed).
        said = " ".join(" ".join(problems).split())
        raise ImproperlyConfigured(f"{said} See docs/tax.md, 'What a deployment configures'.")


def exit_on_incomplete_seller() -> None:
    """For a command's entry point: the seller's refusal as one line on stderr and exit status
    1, as `exit_on_insecure_secret_key`."""
    try:
        refuse_incomplete_seller()
    except ImproperlyConfigured as refused:
        raise SystemExit(f"Refusing to start: {refused}") from None
