"""JSON request bodies: DRF's strict parser, and a 400 rather than a 500 for nesting too deep.

Python's parser gives up at about a thousand levels with a RecursionError, which DRF does not
catch; any client could turn that into a 500.
"""

import json

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

from .errors import DomainError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return self.loads(stream.read().decode(encoding))
        except RecursionError:
            raise DomainError(
                "The body nests objects or lists too deeply to read.", code="nested_too_deep"
            ) from None
        except ValueError as exc:  # malformed JSON, bad UTF-8, NaN or Infinity
            raise ParseError(f"JSON parse error - {exc}") from None

    def loads(self, text: str):
        return json.loads(text, parse_constant=strict_constant)
