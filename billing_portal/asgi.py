import os

from django.core.asgi import get_asgi_application

from billing_portal.startup import refuse_incomplete_seller, refuse_insecure_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
# Before the application is built, as in wsgi.py.
refuse_insecure_secret_key()
application = get_asgi_application()
refuse_incomplete_seller()  # once the apps are loaded, as in wsgi.py
