from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        # Registers the seller's tax settings check (a Django system check, run at start by
        # `manage.py check`, runserver and migrate) and the VIES task, in every process.
        from . import tax_checks  # noqa: F401
