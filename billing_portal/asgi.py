import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
application = get_asgi_application()

from billing_portal.startup import refuse_insecure_secret_key  # noqa: E402 - settings first

refuse_insecure_secret_key()
