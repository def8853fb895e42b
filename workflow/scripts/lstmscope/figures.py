"""Saving figures: every figure of the pipeline is written as PNG and SVG, atomically, each naming the code that
drew it in its metadata (PNG and SVG ``Source``, PDF ``Subject``)."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never open a window; the library never calls plt.show()
import matplotlib.pyplot as plt  # noqa: E402

# The same figure drawn again is the same bytes: an SVG's ids (clip paths, markers, images) are hashes salted with
# this instead of random ones, and no format records the time it was drawn (_metadata)
plt.rcParams["svg.hashsalt"] = "lstmscope"

from .atomic import atomic_path  # noqa: E402
from .provenance import code_version, models_of, sha256_file  # noqa: E402


FORMATS = (".png", ".svg", ".pdf")
STATE_NAMES = {"h": "hidden state h", "c": "cell state c"}  # how a figure names a state


@functools.lru_cache(maxsize=1)
def source() -> str:
    """What drew a figure: ``lstmscope <version>, git <commit>, library <SHA-256 of its modules>`` (a job's figures
    and tables share the code version; the models and settings are in its tables' records and its log)."""
    code = code_version()
    return f"lstmscope {code['lstmscope_version']}, git {code['git_commit']}, library {code['library_sha256']}"


_job: str | None = None  # the pipeline job drawing this process's figures, as JSON (record_job)


def record_job(job: Any) -> None:
    """From now on every PNG and SVG this process saves names the pipeline job that drew it, in its metadata's
    ``Description`` (JSON, beside ``Source``'s code version): ``job`` is the job's ``snakemake`` object; the record
    holds its rule, wildcards and settings (its params by name), the models whose numbers its inputs hold (each
    one's dropout, replicate, seed and checkpoint SHA-256: :func:`~lstmscope.provenance.models_of`) and the SHA-256
    of each input file but the library's own modules (``Source``'s digest covers those; a folder is named)."""
    global _job
    files = [path for path in job.input
             if not (Path(path).suffix == ".py" and Path(path).resolve().parent == Path(__file__).resolve().parent)]
    _job = json.dumps({
        "rule": str(job.rule), "wildcards": {k: str(v) for k, v in job.wildcards.items()},
        "settings": {name: value for name, value in job.params.items() if name != "settings"},
        "models": models_of(files),
        "inputs": {str(path): "a folder" if os.path.isdir(path) else sha256_file(path) for path in files},
    }, sort_keys=True, default=str)


def _metadata(fmt: str) -> dict[str, str | None]:
    if fmt == "pdf":  # a command's figure: no job
        return {"Subject": source(), "CreationDate": None}
    dated = {"Date": None} if fmt == "svg" else {}  # a PNG records no date
    return {"Source": source(), **({"Description": _job} if _job is not None else {}), **dated}


def _tight_box(fig: "matplotlib.figure.Figure"):
    return fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])


def save_figure(fig: "matplotlib.figure.Figure", png: str | os.PathLike, svg: str | os.PathLike,
                dpi: int = 150) -> None:
    """Save ``fig`` to ``png`` and ``svg``, both cropped to the same tight box, and close it.

    The box is measured once: ``bbox_inches="tight"`` would lay the whole figure out again
    for each format before drawing it.
    """
    try:
        box = _tight_box(fig)
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches=box, format="png", metadata=_metadata("png"))
        with atomic_path(svg) as tmp:  # dpi: the resolution of its rasterized layers
            fig.savefig(tmp, dpi=dpi, bbox_inches=box, format="svg", metadata=_metadata("svg"))
    finally:
        plt.close(fig)


def figure_format(path: str | os.PathLike) -> str:
    """The format a figure path asks for by its suffix (png, svg or pdf); anything else is an error."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: the suffix must be one of {', '.join(FORMATS)}")
    return suffix[1:]


def save_figure_as(fig: "matplotlib.figure.Figure", path: str | os.PathLike, dpi: int = 150) -> None:
    """Save ``fig`` to one file whose format is its suffix (.png, .svg or .pdf), atomically, and close it."""
    try:
        fmt = figure_format(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches=_tight_box(fig), format=fmt, metadata=_metadata(fmt))
    finally:
        plt.close(fig)


def text_width_pt(text: str, size: float | str, weight: str = "normal") -> float:
    """The width in points of ``text`` set in matplotlib's default font at ``size`` (points or a name such as
    ``"medium"``), measured on the glyphs' outlines."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    return TextToPath().get_text_width_height_descent(text, FontProperties(size=size, weight=weight),
                                                      ismath=False)[0]


# Where a line may break (between two words): after a separator such as "·" is best, then after a phrase's end
# (",", ";", ":") or before a parenthesis, then before an article or a preposition (a phrase's start); never (when
# another place fits) after a word that leads into the next (an article, a preposition, "=") nor before a closing
# mark or a separator; inside parentheses (a formula, an aside) a break counts one less.
_PHRASE_ENDS = (",", ";", ":")
_SEPARATORS = {"·", "—", "–"}  # not "-", "/" or "|": inside a formula they are its operators
_LEADING = {"=", "±", "a", "an", "the", "of", "to", "by", "at", "in", "on", "its", "their", "from", "for", "with",
            "vs", "vs.", "over", "per", "than"}
_CLOSING = {"=", ")", "%", "×", "]"} | _SEPARATORS
_FILL = 0.6  # a line broken early at a better place keeps at least this share of the width


def _break_score(before: str, after: str, depth: int) -> int:
    """How good a line break is between the words ``before`` and ``after`` at parenthesis ``depth``."""
    if before.lower() in _LEADING or after in _CLOSING:
        return -1
    if before in _SEPARATORS:
        score = 4
    elif before.endswith(_PHRASE_ENDS) or after.startswith("("):
        score = 3
    elif after.lower() in _LEADING:
        score = 2
    else:
        score = 1
    return score - (1 if depth else 0)


def wrap_to_width(text: str, width_pt: float, size: float | str) -> str:
    """``text`` broken at spaces into lines no wider than ``width_pt`` (:func:`text_width_pt`), its own line breaks
    kept; a word wider than that alone (a path given as a text's name) is broken between characters. A line ends
    at the best place among those that leave it at least 60 % full (:func:`_break_score`: after a phrase rather
    than inside one, never after "=" or "of" when another place fits), the last of equals."""
    def pieces(word: str) -> list[str]:
        out = [""]
        for ch in word:
            if out[-1] and text_width_pt(out[-1] + ch, size) > width_pt:
                out.append("")
            out[-1] += ch
        return out

    lines = []
    for paragraph in text.split("\n"):
        words = paragraph.split(" ")
        depths = [0]  # parenthesis depth before each word
        for word in words:
            depths.append(max(0, depths[-1] + word.count("(") + word.count("[") - word.count(")") - word.count("]")))
        start, i = 0, 0  # the line holds words[start:i]
        while i < len(words):
            line = " ".join(words[start:i + 1])
            if i == start or text_width_pt(line, size) <= width_pt:
                if i == start and text_width_pt(words[i], size) > width_pt:  # too wide alone: broken inside
                    *whole, rest = pieces(words[i])
                    lines.extend(whole)
                    words[i] = rest
                i += 1
                continue
            fill = _FILL * width_pt
            breaks = [(_break_score(words[j - 1], words[j], depths[j]), j) for j in range(start + 1, i + 1)
                      if j == i or text_width_pt(" ".join(words[start:j]), size) >= fill]
            cut = max(breaks)[1]
            lines.append(" ".join(words[start:cut]))
            start, i = cut, cut
        lines.append(" ".join(words[start:]))
    return "\n".join(lines)


def figure_title(fig: "plt.Figure", text: str, size: float) -> str:
    """``text`` wrapped within ``fig``'s width (less 20 pt of margin): a title that would widen the saved figure."""
    return wrap_to_width(text, fig.get_figwidth() * 72 - 20, size)
