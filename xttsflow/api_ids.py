"""What the API accepts as a model, clip or voice id and as a language code, and its not-found error:
shared by its own endpoints (xttsflow.api) and the OpenAI-compatible ones (xttsflow.openai_api)."""

from __future__ import annotations

from .errors import XttsflowError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[a-z]{2,4})?$"


class NotFound(XttsflowError):
    """A model or clip id the server does not have (answered 404)."""
