import os

from django.core.wsgi import get_wsgi_application

from billing_portal.startup import refuse_incomplete_seller, refuse_insecure_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
# Before the application is built: any WSGI server importing this module (gunicorn's workers,
# runserver) fails to load it without DEBUG and with a weak SECRET_KEY.
refuse_insecure_secret_key()
application = get_wsgi_application()
# After: the seller's check reads billing.tax_checks, which needs the apps the line above loads.
refuse_incomplete_seller()
