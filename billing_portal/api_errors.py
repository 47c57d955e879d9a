"""The one place where errors become API responses: `{"error": {code, message, details}}`."""

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from accounts.errors import DomainError

_DRF_CODES = {
    exceptions.ParseError: ("malformed_json", "The body is not valid JSON."),
    exceptions.NotAuthenticated: ("unauthenticated", None),
    exceptions.AuthenticationFailed: ("unauthenticated", None),
    exceptions.PermissionDenied: ("forbidden", None),
    exceptions.NotFound: ("not_found", None),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.UnsupportedMediaType: (
        "unsupported_media_type",
        "Send JSON (Content-Type: application/json).",
    ),
    exceptions.NotAcceptable: ("not_acceptable", None),
    exceptions.Throttled: ("throttled", None),
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def api_exception_handler(exc, context) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "The request body is larger than this API accepts."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoValidationError):
        return Response(error_body("invalid", "Invalid input.", _django_details(exc)), status=400)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("invalid", _first_message(exc.detail), {"fields": exc.detail}), status=400
        )
    if isinstance(exc, exceptions.APIException):
        code, message = next(
            ((c, m) for cls, (c, m) in _DRF_CODES.items() if isinstance(exc, cls)),
            (exc.default_code, None),
        )
        if isinstance(exc, exceptions.PermissionDenied):
            denied = exc.get_codes()  # a string: PermissionDenied carries one message
            if isinstance(denied, str) and denied != "permission_denied":
                code = denied  # e.g. insufficient_scope, from KeyScopePermission
        details = {}
        wait: float | None = None
        if isinstance(exc, exceptions.Throttled):
            # Throttled.__init__ sets `wait`; djangorestframework-stubs does not declare it.
            wait = exc.wait  # type: ignore[attr-defined]
            message = f"Too many requests for this key; retry in {wait} s."
            details = {"retry_after": wait}
        response = Response(
            error_body(code, message or str(exc.detail), details), status=exc.status_code
        )
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response["WWW-Authenticate"] = "Bearer"
        if wait is not None:
            response["Retry-After"] = str(int(wait))
        return response
    return None


def _django_details(exc: DjangoValidationError) -> dict:
    if hasattr(exc, "message_dict"):
        return {"fields": exc.message_dict}
    return {"fields": {"non_field_errors": exc.messages}}


def _first_message(detail) -> str:
    """A one-line summary naming the first offending field, e.g. "plan: Unknown plan 'gold'."."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail) or "Invalid input."


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def _no_such_endpoint() -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def json_not_found(request, exception=None) -> HttpResponse:
    """404 for unknown URLs: JSON under /api/, the plain page elsewhere."""
    if is_api_path(request.path):
        return _no_such_endpoint()
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


class ApiErrorsAsJson:
    """Under /api/, a 404 or 405 that no API view wrote is answered in the API's error shape.

    handler404 alone is not enough: with DEBUG on (the demo) Django answers an unknown path
    with its HTML debug page and never calls the handler, and a view outside DRF (the schema's
    Swagger page) refuses a method with a plain-text 405. A JSON answer is left as it is: it is
    an API view's own (an unknown account's 404, DRF's 405). Only the body changes: the headers
    stay. It sits outside CommonMiddleware, so `/api/schema` still redirects to `/api/schema/`
    (APPEND_SLASH) rather than being a 404."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code not in (404, 405) or not is_api_path(request.path_info):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code == 404:
            answer = _no_such_endpoint()
        else:
            message = f'Method "{request.method}" not allowed.'
            answer = JsonResponse(error_body("method_not_allowed", message), status=405)
        # The headers the inner middleware wrote stay (Allow, the security headers, no-store):
        # only the body and its type change.
        for header, value in response.items():
            if header.lower() not in ("content-type", "content-length"):
                answer[header] = value
        answer.cookies = response.cookies
        return answer


def json_server_error(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("server_error", "Something went wrong on our side; it was logged."),
            status=500,
        )
    from django.views.defaults import server_error

    return server_error(request)
