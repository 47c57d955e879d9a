"""Logs: one JSON object per line in production, readable lines in the demo, each carrying the
ids of what was being done (request, task, account, invoice) so that one charge or one request
can be followed across the web and worker processes.

The code logs through the standard `logging` module; structlog's formatter renders every record
and adds what is bound in `structlog.contextvars` (the request middleware and the Celery signals
below bind the ids and clear them after).
"""

import inspect
import re
import uuid

import structlog
from structlog.typing import Processor

_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
# A request id a client or proxy sends is kept if it looks like one; anything else is replaced
# (it lands in every log line, so it must not carry text that forges lines or hides secrets).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def logging_config(*, as_json: bool, level: str) -> dict:
    """The LOGGING setting."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    if as_json:
        render = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        render = [structlog.dev.ConsoleRenderer(colors=False)]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
                "foreign_pre_chain": _SHARED,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
    }


def request_id_from(header: str | None) -> str:
    return header if header and _REQUEST_ID.match(header) else uuid.uuid4().hex


class RequestContext:
    """Binds `request_id` (and `account`, `invoice_id` from the URL) to every log line of a
    request, and returns the id in `X-Request-ID` so a merchant's report can be traced."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get("X-Request-ID"))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response["X-Request-ID"] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if "slug" in view_kwargs:
            structlog.contextvars.bind_contextvars(account=view_kwargs["slug"])
        if "invoice_id" in view_kwargs:
            structlog.contextvars.bind_contextvars(invoice_id=view_kwargs["invoice_id"])


def task_context_bind(*, task, task_id: str, args, kwargs) -> None:
    """Before a Celery task runs: its id and name, and every `*_id` argument it was given."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name)
    try:
        bound = inspect.signature(task.run).bind(*(args or ()), **(kwargs or {}))
    except TypeError:
        return  # the task will fail on its arguments itself; log it with what we have
    ids = {name: value for name, value in bound.arguments.items() if name.endswith("_id")}
    structlog.contextvars.bind_contextvars(**ids)
