"""OpenAPI pieces shared by every app's API: the schema class (text fields as DRF checks them),
the money object, the error shape, and the hook that documents on every operation what the
conventions add (errors, Idempotency-Key, 429, a required body)."""

import functools
import unicodedata

from drf_spectacular import openapi
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers

from .validators import PlainText


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's, saying also what DRF's text fields do beyond their JSON Schema type:
    they trim the text before checking it (spaces alone are blank), and `PlainText` refuses
    hidden characters. Without it the schema took text the API refused (Schemathesis found it)."""

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction != "request":
            return schema
        for field in force_instance(serializer).fields.values():
            text = schema["properties"].get(field.field_name, {})
            if (
                isinstance(field, serializers.CharField)
                and text.get("type") == "string"
                and not {"pattern", "format", "enum"} & set(text)
            ):
                plain = [v for v in field.validators if isinstance(v, PlainText)]
                pattern = text_pattern(
                    non_blank=field.trim_whitespace and not field.allow_blank,
                    plain=bool(plain),
                    multi_line=any(v.multi_line for v in plain),
                )
                if pattern:
                    text["pattern"] = pattern
        return schema


@functools.cache
def text_pattern(*, non_blank: bool, plain: bool, multi_line: bool) -> str | None:
    """A JSON Schema pattern for text: `non_blank`, something besides what str.strip() trims;
    `plain`, none of the characters input_rules.text_problem refuses (in a `multi_line` one,
    tabs, line feeds and a carriage return before a line feed are taken)."""
    if not (non_blank or plain):
        return None
    refused = _char_class(_refused()) if plain else ""
    if multi_line:
        refused = _char_class(_refused() - {ord("\t"), ord("\n"), ord("\r")})
        char = f"(?:[^{refused}\\r]|\\r\\n)"
    else:
        char = f"[^{refused}]" if plain else "."
    if not non_blank:
        return f"^{char}*$"
    # One character neither refused nor trimmed, anywhere: the rest as `char` says.
    solid = f"[^{refused}{_char_class(_spaces())}]"
    return f"^{char}*{solid}{char}*$" if plain else solid


def _char_class(points: frozenset[int]) -> str:
    """The inside of a regex class naming `points` (in the BMP), as ranges of \\uXXXX."""
    ranges: list[list[int]] = []
    for point in sorted(points):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])

    def spell(point: int) -> str:
        return f"\\u{point:04x}"

    return "".join(spell(a) if a == b else f"{spell(a)}-{spell(b)}" for a, b in ranges)


@functools.cache
def _spaces() -> frozenset[int]:
    """What str.strip() trims, in this Python's Unicode (all in the BMP)."""
    return frozenset(point for point in range(0x10000) if chr(point).isspace())


@functools.cache
def _refused() -> frozenset[int]:
    """What input_rules.text_problem refuses in the Basic Multilingual Plane, lone surrogates
    left out: JSON Schema's regex engines (jsonschema-rs among them) cannot name one, and
    UTF-8 cannot carry one. The few refused beyond it (tags U+E0001-E007F, some format
    controls) are said in words: a class naming them stops Schemathesis' generation."""
    refused = ("Cc", "Cf", "Zl", "Zp")
    return frozenset(p for p in range(0x10000) if unicodedata.category(chr(p)) in refused)


class MoneyOut(serializers.Serializer):
    amount = serializers.IntegerField(required=False, help_text="Integer minor units (cents).")
    amount_decimal = serializers.CharField(
        required=False, help_text="Only for a per-unit price finer than a minor unit."
    )
    currency = serializers.CharField()


class PeriodOut(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="Stable; branch on it.")
    message = serializers.CharField(help_text="For people; may change.")
    details = serializers.DictField(
        help_text="`fields` lists every field error at once: {field: [messages]}."
    )


class ErrorOut(serializers.Serializer):
    error = ErrorDetail()


ERROR_EXAMPLES = {
    400: OpenApiExample(
        "Field errors",
        value={
            "error": {
                "code": "invalid",
                "message": "plan: Unknown plan 'gold'.",
                "details": {
                    "fields": {
                        "plan": ["Unknown plan 'gold'."],
                        "billing_email": ["Enter a valid email address."],
                    }
                },
            }
        },
    ),
    401: OpenApiExample(
        "No key",
        value={
            "error": {
                "code": "unauthenticated",
                "message": "Send an API key: 'Authorization: Bearer <key>'.",
                "details": {},
            }
        },
    ),
    403: OpenApiExample(
        "Scope",
        value={
            "error": {
                "code": "insufficient_scope",
                "message": "This API key's scopes do not allow this request.",
                "details": {},
            }
        },
    ),
    404: OpenApiExample(
        "Missing or another tenant's",
        value={"error": {"code": "not_found", "message": "No account 'shop'.", "details": {}}},
    ),
    409: OpenApiExample(
        "Idempotency-Key reused",
        value={
            "error": {
                "code": "idempotency_key_reused",
                "message": "This Idempotency-Key was already used with a different body.",
                "details": {},
            }
        },
    ),
    429: OpenApiExample(
        "Rate limited",
        value={
            "error": {
                "code": "throttled",
                "message": "Too many requests for this key; retry in 12 s.",
                "details": {"retry_after": 12},
            }
        },
    ),
}

_DESCRIPTIONS = {
    400: "Invalid input: every field error at once in `details.fields`.",
    401: "No API key, or an unknown, revoked or expired one (a browser session is not a key).",
    403: "The key's scopes or kind do not allow this.",
    404: "Missing, or another tenant's (the two are never told apart).",
    409: "A conflict: state, or an Idempotency-Key reused with another body.",
    413: "The body is larger than this API accepts.",
    429: "Rate limited: retry after `Retry-After` seconds.",
}


# OpenAPI links: what a client (and Schemathesis' stateful tests) can do next with an answer.
_SLUG = {"slug": "$response.body#/slug"}
LINKS = {
    ("accounts_create", "201"): {
        "GetAccount": ("accounts_retrieve", _SLUG),
        "GetUsage": ("usage_retrieve", _SLUG),
        "GetEntitlements": ("entitlements_retrieve", _SLUG),
        "ListInvoices": ("invoices_list", _SLUG),
        "ChangeSubscription": ("subscription_changes_create", _SLUG),
    },
    ("subscription_changes_create", "201"): {
        "CancelChange": (
            "subscription_changes_cancel",
            {"slug": "$request.path.slug", "change_id": "$response.body#/id"},
        ),
    },
    ("webhook_endpoints_create", "201"): {
        "GetEndpoint": ("webhook_endpoints_retrieve", {"endpoint_id": "$response.body#/id"}),
        "DeleteEndpoint": ("webhook_endpoints_delete", {"endpoint_id": "$response.body#/id"}),
    },
    ("webhook_deliveries_replay", "201"): {
        "GetReplay": ("webhook_deliveries_retrieve", {"delivery_id": "$response.body#/id"}),
    },
}


def conventions_hook(result, generator, request, public):
    """drf-spectacular postprocessing: every /api/v1/ operation documents the error shape for
    the statuses the conventions can answer, POSTs take `Idempotency-Key`, 429 has
    `Retry-After`."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object", "additionalProperties": True},
                },
            }
        },
    }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            statuses = [400, 401, 403, 404, 429]
            if method != "get":
                statuses += [409, 413]
            responses = operation.setdefault("responses", {})
            for status in statuses:
                entry = responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
                entry.setdefault("description", _DESCRIPTIONS[status])
                content = entry.setdefault("content", {})
                media = content.setdefault("application/json", {})
                media.setdefault("schema", {"$ref": "#/components/schemas/Error"})
                example = ERROR_EXAMPLES.get(status)
                if example is not None:
                    media.setdefault("examples", {example.name: {"value": example.value}})
            for (operation_id, status), links in LINKS.items():
                if operation.get("operationId") == operation_id and status in responses:
                    responses[status]["links"] = {
                        name: {"operationId": target, "parameters": parameters}
                        for name, (target, parameters) in links.items()
                    }
            responses["429"]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
            }
            if "requestBody" in operation:
                # A view that reads a body reads an absent one as {}: always refused (a field
                # is required, or a change names nothing).
                operation["requestBody"]["required"] = True
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                    parameters.append(
                        {
                            "in": "header",
                            "name": "Idempotency-Key",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                            "description": "Same key and body: the first response is "
                            "replayed (`Idempotent-Replayed: true`); same key, other body: 409.",
                        }
                    )
    return result


def paginated(item: serializers.Serializer, name: str) -> serializers.Serializer:
    """The cursor page envelope of a list (NewestFirstPagination)."""
    from drf_spectacular.utils import inline_serializer

    return inline_serializer(
        name,
        {
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
            "previous": serializers.URLField(allow_null=True),
            "results": serializers.ListField(child=item),
        },
    )
