"""Attention heatmaps as PNG files: source subwords across, output subwords down.

Drawn with matplotlib's Agg renderer through its object-oriented API (Figure and
FigureCanvasAgg) instead of pyplot: nothing needs a display, no global backend is
switched for the rest of the process, and no figure stays registered in pyplot
when one is drawn per input line.
"""

from __future__ import annotations

import warnings

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

INCHES_PER_LABEL = 0.3
MAX_INCHES = 60  # 6000 pixels at 100 dpi: very long lines get crowded labels rather than huge files


def save_attention_heatmap(
    path: str, weights: torch.Tensor, source: list[str], target: list[str], title: str = ""
) -> None:
    """Write attention `weights` (T', S') in [0, 1] as a PNG heatmap to `path`, one cell per subword pair.

    `source` labels the S' columns and `target` the T' rows (an `s2s.Alignment` holds all three).
    """
    weights = weights.float().numpy()  # (T', S')
    rows, columns = weights.shape
    size = (min(MAX_INCHES, 2.5 + INCHES_PER_LABEL * columns), min(MAX_INCHES, 2.0 + INCHES_PER_LABEL * rows))
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    axes.set_xticks(range(columns), [_label(p) for p in source], rotation=90, fontsize=8)
    axes.set_yticks(range(rows), [_label(p) for p in target], fontsize=8)
    axes.set_xlabel("source subwords")
    axes.set_ylabel("output subwords")
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8)
    with warnings.catch_warnings():
        # characters missing from the font (CJK, emoji, ...) are drawn as boxes; one warning per line is noise
        warnings.simplefilter("ignore", UserWarning)
        figure.savefig(path)


def _label(piece: str) -> str:
    """A tick label shown literally: '$' would otherwise start matplotlib's math mode (and can fail to parse)."""
    return piece.replace("$", r"\$")
