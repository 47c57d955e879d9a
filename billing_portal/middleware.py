"""Request guards that must run before any view reads the body."""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

from .api_errors import error_body


class ApiBodySizeLimit:
    """Refuse an API body over DATA_UPLOAD_MAX_MEMORY_SIZE with a JSON 413.

    DRF parses from the request stream, which skips Django's own size check on `request.body`;
    without this a huge batch would be read whole into memory.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return JsonResponse(
                    error_body(
                        "payload_too_large",
                        f"The request body is {length} bytes; this API accepts at most {limit}.",
                        {"max_bytes": limit},
                    ),
                    status=413,
                )
        return self.get_response(request)


class RefuseNulBytes:
    """Refuse a request holding a NUL byte in its path, query string, headers or form/body text
    with a 400: JSON in the API's error format under /api/, the plain error page elsewhere.

    PostgreSQL refuses NUL in text, so a NUL that reaches any query (a slug, a search, a
    session cookie) used to be a 500 wherever it landed; one check at the edge covers every
    route, today's and tomorrow's. NUL escaped inside a JSON string (`\\u0000`) is not a NUL
    byte of the body: the API's fields refuse it (and ingest rejects that one event, not its
    batch).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = _nul_byte_in(request)
        if where is None:
            return self.get_response(request)
        part, name = where
        name = name[:60]  # a name is the caller's own text: echoed short
        message = f"The request holds a NUL byte (%00) in its {part}"
        message += f" ({name}): it is never accepted." if name else ": it is never accepted."
        if request.path_info.startswith("/api/"):
            return JsonResponse(error_body("invalid", message, {"field": name or part}), status=400)
        return render(request, "400.html", {"message": message}, status=400)


def _nul_byte_in(request) -> tuple[str, str] | None:
    """Where the request holds a NUL byte, as (part, name), or None."""
    if "\x00" in request.path_info:
        return "path", _path_argument_with_nul(request.path_info)
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return "query string", name.replace("\x00", "")
    for name, value in request.META.items():
        if (name.startswith("HTTP_") or name.startswith("CONTENT_")) and "\x00" in str(value):
            return "headers", name.removeprefix("HTTP_").replace("_", "-").title()
    if request.method in ("GET", "HEAD", "OPTIONS") and not request.META.get("CONTENT_LENGTH"):
        return None
    # The API reads JSON only (a form there is a 415 from the view): its body is checked as
    # bytes, never parsed as a form. Parsing one read the request's stream, so the view could
    # no longer read the body (the Idempotency-Key's hash): a 500 (Schemathesis found it).
    is_api = request.path_info.startswith("/api/")
    if not is_api and request.content_type in (
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ):
        # Form fields as decoded (%00 included); an uploaded file may hold any bytes.
        for name, values in request.POST.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return "form", name.replace("\x00", "")
    elif b"\x00" in request.body:
        return "body", ""
    return None


def _path_argument_with_nul(path: str) -> str:
    """The URL argument holding the NUL (`ticket` in /accounts/x/tickets/%00/billing), so the
    answer names it as the view would; "" when no route takes it."""
    try:
        match = resolve(path)
    except Resolver404:
        return ""
    return next((name for name, value in match.kwargs.items() if "\x00" in str(value)), "")
