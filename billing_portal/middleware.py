"""Request guards that must run before any view reads the body."""

from django.conf import settings
from django.http import JsonResponse

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
