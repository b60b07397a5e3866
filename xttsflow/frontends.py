"""Config-time check that every language a config names can go through the workflow here.

Only the Snakefile's config check (xttsflow.config) imports this: it looks installed packages up by name,
which no rule's own code needs.
"""

from __future__ import annotations

import importlib.util

from .languages import AUTO, XTTS_LANGUAGES, xtts_language

#: What each language's text front end imports beyond coqui-tts itself (its extras; Hindi numbers: ours).
FRONT_END_MODULES = {
    "ja": {"cutlet": "cutlet", "fugashi": "fugashi", "unidic_lite": "unidic-lite"},
    "zh-cn": {"pypinyin": "pypinyin"},
    "ko": {"ko_speech_tools": "ko-speech-tools"},
    "hi": {"num_to_words": "indic-num2words"},
}


def check_languages(languages) -> dict[str, str]:
    """{code: why it cannot be used here} for the given codes; {} when every one can."""
    refused = {}
    for code in dict.fromkeys(c for c in languages if c and c != AUTO):
        name = xtts_language(code)
        if name is None:
            refused[code] = (f"XTTS-v2 does not speak {code!r} (it speaks {', '.join(XTTS_LANGUAGES)}) — "
                             "fine-tuning cannot teach it a new language's text front end")
            continue
        missing = [dist for module, dist in FRONT_END_MODULES.get(name, {}).items()
                   if importlib.util.find_spec(module) is None]
        if missing:
            refused[code] = (f"XTTS's {name} text front end needs {', '.join(missing)}, which is not installed "
                             "— install the pins in requirements.lock (pip install -r requirements.lock)")
    return refused
