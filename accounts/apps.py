from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        # Every successful login (the portal's and the admin's) is kept for the evidence of a
        # card dispute; the receiver only hands the request's origin to the service.
        from django.contrib.auth.signals import user_logged_in

        user_logged_in.connect(_login_recorded, dispatch_uid="accounts.login_recorded")


def _login_recorded(sender, request, user, **kwargs) -> None:
    from . import logins, services

    ip_address, user_agent = logins.request_origin(request)
    services.login_record(user=user, ip_address=ip_address, user_agent=user_agent)
