import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
application = get_wsgi_application()

from billing_portal.startup import refuse_insecure_secret_key  # noqa: E402 - settings first

refuse_insecure_secret_key()
