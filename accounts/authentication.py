"""DRF authentication by `Authorization: Bearer <key>`."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from audit.models import Source
from audit.services import acting_for_this_request

from . import services
from .models import ApiKeyScope
from .principals import KeyPrincipal


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme != self.keyword or not raw.strip():
            raise exceptions.AuthenticationFailed("Use the header 'Authorization: Bearer <key>'.")
        key = services.api_key_authenticate(raw=raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("This API key is unknown or revoked.")
        # Audit rows written by this request name the partner's key (see AuditRequestScope).
        acting_for_this_request(source=Source.PARTNER, label=f"API key {key.prefix}")
        return KeyPrincipal(key=key), key

    def authenticate_header(self, request) -> str:
        return self.keyword


class KeyScopePermission(permissions.BasePermission):
    """Only an API key gets in (a session login is not a key: 401), and only within its scopes:
    `read` for GET, `write` for anything else; the event stream also takes an `events:write`
    key, which nothing else takes. A view opts in to that with `ingest = True`; a view that
    takes another scope beside `write` names it in `also_write_scopes` (the credit notes take
    `refunds:write`, and check themselves that a refund is asked only by a key holding it)."""

    message = "This API key's scopes do not allow this request."
    code = "insufficient_scope"

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, KeyPrincipal):
            raise exceptions.NotAuthenticated("Send an API key: 'Authorization: Bearer <key>'.")
        return any(principal.key.allows(s) for s in required_scopes(request.method, view))


def required_scopes(method: str, view) -> tuple[str, ...]:
    """Any one of these scopes lets the request through."""
    if method in permissions.SAFE_METHODS:
        return (ApiKeyScope.READ,)
    if getattr(view, "ingest", False):
        return (ApiKeyScope.WRITE, ApiKeyScope.EVENTS_WRITE)
    return (ApiKeyScope.WRITE, *getattr(view, "also_write_scopes", ()))


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes the bearer key in the published OpenAPI schema."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A partner or account key from `manage.py create_api_key`.",
        }
