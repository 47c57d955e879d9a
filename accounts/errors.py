"""Domain errors: raised by services and selectors, mapped once to API errors and form messages.

They live in `accounts` because it is the lowest app: every other app may import it.
"""

from typing import Any


class DomainError(Exception):
    """A refusal a user can act on. `code` is stable (API clients branch on it)."""

    status = 400
    code = "invalid"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class NotFound(DomainError):
    """Missing, or belonging to another tenant: both answer the same, never leaking existence."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
