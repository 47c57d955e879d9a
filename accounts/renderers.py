"""JSON response bodies: DRF's renderer, and a 400 stays a 400 when it echoes a lone surrogate.

A field error quotes what was sent ('"\\ud800" is not a valid choice.'). A lone surrogate is
valid in a JSON string but not in UTF-8, so DRF's renderer (unescaped UTF-8) raised
UnicodeEncodeError and the refusal became a 500.
"""

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # Only this body is escaped to ASCII (\ud800): the same JSON, in bytes UTF-8 carries.
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True
