"""Serializer pieces shared by every app's API."""

from decimal import Decimal

from rest_framework import pagination, serializers


class AwareDateTimeField(serializers.DateTimeField):
    """RFC 3339 with an offset; a naive timestamp is ambiguous and refused."""

    default_error_messages = {
        "naive": "Give the time zone offset (RFC 3339), e.g. 2026-11-01T09:30:00Z.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str) and not _has_offset(value):
            self.fail("naive")
        return super().to_internal_value(value)


def _has_offset(value: str) -> bool:
    tail = value.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


def money(amount_minor: int | Decimal, currency: str) -> dict:
    """The API's money object: integer minor units; sub-cent unit prices as a decimal string."""
    value = Decimal(amount_minor)
    if value == value.to_integral_value():
        return {"amount": int(value), "currency": currency}
    return {"amount_decimal": str(value.normalize()), "currency": currency}


class NewestFirstPagination(pagination.CursorPagination):
    """Lists are newest first and paginated with `?cursor=` (api.md, Conventions)."""

    ordering = ("-created_at", "-pk")
    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"
