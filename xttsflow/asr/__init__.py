"""Speech recognisers behind one interface (`backend.Backend`), and the registry that names them.

`transcribe.backend` in the config is a key of BACKENDS. A new recogniser is one module here with a
Backend subclass, one entry below, its name in config/schema.yaml's enum and a paragraph in docs/transcribe.md.
"""

from __future__ import annotations

from .backend import Backend
from .faster_whisper import FasterWhisper
from .openai_whisper import OpenAIWhisper

#: `transcribe.backend` -> the class that implements it.
BACKENDS: dict[str, type[Backend]] = {cls.name: cls for cls in (FasterWhisper, OpenAIWhisper)}
