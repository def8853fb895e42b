"""What the benchmark scripts share: where WikiText-2 is, how to start Snakemake, and writing a benchmark's activations file."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import lstmscope  # noqa: E402,F401  (pins the CPU kernels as in the pipeline: import common before numpy or torch)

# WikiText-2: $LSTMSCOPE_WIKITEXT (as the tests), else the shared copy beside the project
DATA = Path(os.environ.get("LSTMSCOPE_WIKITEXT", ROOT.parent / "shared" / "data" / "wikitext-2"))


def snakemake_command() -> list[str]:
    """The Snakemake beside this interpreter (the venv's), else ``python -m snakemake``."""
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def text_words(data: Path, ap, **lengths: int) -> list[str]:
    """WikiText-2's test split, read once, the benchmark's text: a length asked for (``--tokens 300000`` as
    ``tokens=300000``) beyond it is ``ap``'s error, since a shorter text timed under the length printed would
    mislabel every line."""
    from lstmscope.vocabulary import read_tokens

    words = read_tokens(Path(data) / "test.txt")
    for name, n in lengths.items():
        if not 0 < n <= len(words):
            ap.error(f"--{name} {n}: the test split has {len(words)} tokens")
    return words


def write_bench_activations(model, ids, words, path: Path, **attrs) -> None:
    """The pipeline's activations writer, with the attributes every reader checks (no real provenance), and
    ``attrs`` besides (``checkpoint_sha256``, which the gate statistics check)."""
    from lstmscope.activations import write_activations
    from lstmscope.activations_file import FORMAT

    cfg = model.config
    write_activations(model, ids, words, path, progress=False,
                      attrs={"format": FORMAT, "provenance": "{}", "model": "bench", "text": "bench",
                             "n_tokens": len(ids), "layers": cfg.layers, "hidden_size": cfg.hidden_size,
                             "dtype": "float32", "dropout": cfg.dropout, **attrs})
