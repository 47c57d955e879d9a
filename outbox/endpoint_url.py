"""A webhook endpoint's URL: one grammar, checked by the API and published in its schema, so
that the two cannot disagree (OpenAPI's `format: uri` alone is far wider than what Django's
URLField takes: `ftp:`, a 300-character host name, `https://x` without a dot...).

`https://` (`http://` too where WEBHOOK_ALLOW_HTTP is on), optional `user:password@`, then a host
name (labels of letters, digits and inner hyphens, ending in an alphabetic or `xn--` top-level
label: send an international name as punycode), an IPv4 address or an IPv6 one in brackets, an
optional port, and a path, query and fragment of RFC 3986's characters (anything else
percent-encoded). What no pattern can say, and the schema says in words: a host name is at most
253 characters (a length lookahead beside the URL's maxLength stalls Schemathesis' generation),
and the host must be public: an address literal (outbox/addresses.py) or localhost, or a name
under it, is refused by `services`, saying why.
"""

import re
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

_LABEL = "[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_TOP = "(?:[a-zA-Z]{2,63}|xn--[a-zA-Z0-9]{1,59})"
# localhost, as Django takes it: `services` refuses it (and any name under it) with words that
# say why, as it does a private address.
_LOCALHOST = "".join(f"[{c}{c.upper()}]" for c in "localhost")
_NAME = f"(?:(?:{_LABEL}\\.)+{_TOP}\\.?|{_LOCALHOST})"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_H = "[0-9a-fA-F]{1,4}"
_IPV6 = "|".join(
    [
        f"(?:{_H}:){{7}}{_H}",
        f"(?:{_H}:){{1,7}}:",
        f"(?:{_H}:){{1,6}}:{_H}",
        f"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
        f"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
        f"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
        f"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
        f"{_H}:(?::{_H}){{1,6}}",
        f":(?:(?::{_H}){{1,7}}|:)",
        # with an IPv4 address in its last 32 bits
        f"(?:{_H}:){{6}}{_IPV4}",
        f"::(?:ffff(?::0{{1,4}})?:)?{_IPV4}",
        f"(?:{_H}:){{1,4}}:{_IPV4}",
    ]
)
# Django reads at most 39 characters of an IPv6 address.
_BRACKETED_IPV6 = f"\\[(?=[0-9a-fA-F:.]{{2,39}}\\])(?:{_IPV6})\\]"
_ESCAPED = "%[0-9a-fA-F]{2}"
_USER = f"(?:[a-zA-Z0-9._~!$&'()*+,;=-]|{_ESCAPED})"
_CHAR = f"(?:[a-zA-Z0-9._~!$&'()*+,;=:@-]|{_ESCAPED})"
_REST = f"(?::[0-9]{{1,5}})?(?:/(?:{_CHAR}|/)*)?(?:\\?(?:{_CHAR}|[/?])*)?(?:#(?:{_CHAR}|[/?])*)?"

DESCRIPTION = (
    "https:// and a public host: a name (at most 253 characters; international names in "
    "punycode, nothing under localhost) or a public IP address (IPv6 in brackets); path, query "
    "and fragment in RFC 3986's characters."
)


@lru_cache(maxsize=2)
def pattern(*, allow_http: bool) -> str:
    schemes = "https?" if allow_http else "https"
    host = f"(?:{_NAME}|{_IPV4}|{_BRACKETED_IPV6})"
    return f"^{schemes}://(?:{_USER}+(?::{_USER}*)?@)?{host}{_REST}$"


@lru_cache(maxsize=2)
def _compiled(allow_http: bool) -> re.Pattern[str]:
    return re.compile(pattern(allow_http=allow_http))


def _check(value: str) -> None:
    if not _compiled(settings.WEBHOOK_ALLOW_HTTP).fullmatch(value):
        raise ValidationError(
            "Use an https:// URL with a host name or a public IP address; percent-encode "
            "characters RFC 3986 does not allow in a path.",
            code="invalid",
        )


class WebhookUrlField(serializers.URLField):
    """Django's URL checks, then the grammar the schema publishes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(_check)


class WebhookUrlSchema(OpenApiSerializerFieldExtension):
    target_class = WebhookUrlField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["pattern"] = pattern(allow_http=settings.WEBHOOK_ALLOW_HTTP)
        schema["description"] = DESCRIPTION
        return schema
