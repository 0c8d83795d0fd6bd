"""s2s: recurrent sequence-to-sequence neural machine translation.

    import s2s
    translator = s2s.load("outputs/2026-12-07/10-00-00")      # a run directory or a checkpoint
    translator.translate(["Dienstag, 9. November 1989"], beam_size=5)

docs/python-api.md describes every function and option.
"""

__version__ = "0.2.0"

from s2s.api import evaluate, load, train  # noqa: E402
from s2s.config import Config  # noqa: E402
from s2s.decoding.options import DecodingOptions  # noqa: E402
from s2s.decoding.translator import Alignment, Score, Translation, Translator  # noqa: E402
from s2s.errors import S2SError  # noqa: E402

__all__ = [
    "Alignment",
    "Config",
    "DecodingOptions",
    "S2SError",
    "Score",
    "Translation",
    "Translator",
    "__version__",
    "evaluate",
    "load",
    "train",
]
