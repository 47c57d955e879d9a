"""Checks made when a process that serves requests or runs tasks starts (not for every
management command: `makemigrations` signs nothing)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def refuse_insecure_secret_key() -> None:
    """Anything signed with the demo's known key (confirmation links, sessions) could be
    forged: without DEBUG, a web server or worker never starts with it."""
    if not settings.DEBUG and settings.SECRET_KEY == settings.INSECURE_SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is unset (or the demo's key) while DEBUG is false: set SECRET_KEY to a "
            "long random value (see .env.example), or DEBUG=true for the local demo."
        )
