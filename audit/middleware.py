from .models import Source
from .services import acting_as


class AuditRequestScope:
    """Each request starts as the system and ends as it began, whatever a view named inside it
    (a worker thread serves many requests: an actor must never outlive its own)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(source=Source.SYSTEM):
            return self.get_response(request)
