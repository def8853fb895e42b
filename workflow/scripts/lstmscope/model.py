"""The word-level LSTM language model of pytorch/examples word_language_model.

Embedding -> dropout -> multi-layer ``nn.LSTM`` (dropout between layers) ->
dropout -> linear decoder. Dropout is applied to non-recurrent connections
only; the recurrent connections inside ``nn.LSTM`` never see dropout.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_path

CHECKPOINT_FORMAT = "lstmscope-checkpoint-1"

# On the CPU torch runs nn.LSTM through oneDNN ("mkldnn") where it can, and oneDNN picks its kernels by the
# processor on its own, out of reach of the pinned variables (lstmscope.kernels): from the same seed an
# AVX-512 machine and an AVX2 one trained default models of test perplexity 410 and 452. Off, the LSTM runs
# on ATen's kernels and MKL's matrix products, which are pinned (at the thesis's size a CPU training step takes
# about 1.5 times as long). Importing this module turns it off for the whole process (CUDA is not affected) unless
# the environment sets LSTMSCOPE_ONEDNN=1, which keeps it, at the price of that reproducibility.
torch.backends.mkldnn.enabled = os.environ.get("LSTMSCOPE_ONEDNN") == "1"


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    embedding_size: int
    hidden_size: int
    layers: int
    dropout: float

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_size", "hidden_size", "layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model config {name}={getattr(self, name)}: must be a positive integer")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"model config dropout={self.dropout}: must be in [0, 1)")


class LSTMLanguageModel(nn.Module):
    """Embedding, LSTM, decoder; dropout on embeddings, between layers and on the output."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.vocab_size, config.embedding_size)
        # nn.LSTM's dropout argument acts between layers only (never on h_{t-1} -> h_t).
        self.rnn = nn.LSTM(config.embedding_size, config.hidden_size, config.layers,
                           dropout=config.dropout if config.layers > 1 else 0.0)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.init_weights()

    def init_weights(self) -> None:
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def init_hidden(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = next(self.parameters())
        shape = (self.config.layers, batch_size, self.config.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)

    def features(self, tokens: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The decoder's input (T*B, H), after output dropout, and the final (h, c)."""
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb, hidden)
        return self.drop(output).reshape(-1, self.config.hidden_size), hidden

    def forward(self, tokens: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``tokens``: (T, B) ids. Returns logits (T*B, V) and the final (h, c)."""
        features, hidden = self.features(tokens, hidden)
        return self.decoder(features), hidden


# MKL's conditional-numerical-reproducibility branches (mkl_cbwr.h); 1: none set, MKL chooses by the processor
MKL_BRANCHES = {1: "unpinned", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
                10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1", 14: "AVX512_E1"}


def mkl_branch() -> str | None:
    """The branch MKL runs torch's matrix products on, as MKL applies ``MKL_CBWR`` (``AUTO`` where it was told a
    branch it keeps for Intel processors only); None where this torch has no MKL."""
    import ctypes

    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        get = ctypes.CDLL(str(lib)).mkl_serv_cbwr_get  # MKL is linked into torch; this is mkl_cbwr_get's service
    except (OSError, AttributeError):
        return None
    get.restype = ctypes.c_int
    code = get(ctypes.c_int(1))  # MKL_CBWR_BRANCH
    return MKL_BRANCHES.get(code, f"code {code}")


def cpu_kernels() -> str:
    """The CPU kernels in effect, recorded in the torch stages' provenance: torch's (``AVX2`` on any x86-64 CPU
    that has it, as importing ``lstmscope`` pinned them, :mod:`lstmscope.kernels`), then MKL's branch
    (``MKL COMPATIBLE`` when pinned), unless the environment chose others; ``, oneDNN`` added where a process
    turned oneDNN back on (its own kernels, not pinned)."""
    kernels = torch.backends.cpu.get_cpu_capability()
    branch = mkl_branch()
    if branch is not None:
        kernels = f"{kernels}, MKL {branch}"
    return f"{kernels}, oneDNN" if torch.backends.mkldnn.enabled and torch.backends.mkldnn.is_available() else kernels


def choose_device(device: str, gpus: int, key: str) -> torch.device:
    """``cpu``; ``cuda`` (error if absent); ``auto``: CUDA when the job was given a GPU and one is present.

    ``key`` is the setting's name (``training.device``), for the error messages.
    """
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{key} is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
        return torch.device("cuda")
    if device == "auto":
        if gpus > 0 and not torch.cuda.is_available():
            given = allocated_gpus()
            if given:  # a cluster gave the job a GPU this torch cannot use: maybe hours of CPU work on a GPU node
                logging.getLogger(__name__).warning(
                    "%s is 'auto' and the job was given a GPU (%s) but torch %s sees no CUDA device, so it computes "
                    "on the CPU (a CPU build of torch? with --sdm conda, create the environments with "
                    "CONDA_OVERRIDE_CUDA set, e.g. 12.4; or set %s: cpu and a CPU partition)", key, given,
                    torch.__version__, key)
        return torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")
    raise ValueError(f"{key}={device!r}: choose auto, cpu or cuda")


def gpu_name(device: torch.device) -> str | None:
    """The GPU a job computes on, as CUDA names it (None on the CPU): provenance records it beside the device, since
    two kinds of GPU can round the same sums differently."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def allocated_gpus() -> str:
    """What says SLURM gave this job GPUs (``NAME=value``: ``SLURM_JOB_GPUS`` or ``SLURM_STEP_GPUS``, the GPUs'
    indices, or ``SLURM_GPUS_ON_NODE``, their number, above 0), or "" where nothing does."""
    for name in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        if os.environ.get(name, "").strip():
            return f"{name}={os.environ[name].strip()}"
    count = os.environ.get("SLURM_GPUS_ON_NODE", "").strip()
    return f"SLURM_GPUS_ON_NODE={count}" if count.isdigit() and int(count) > 0 else ""


def save_checkpoint(path: str | os.PathLike, model: LSTMLanguageModel, vocabulary_sha256: str,
                    extra: dict[str, Any] | None = None) -> None:
    """Write weights + model config + vocabulary digest, loadable with ``weights_only=True``."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_config": asdict(model.config),
        "vocabulary_sha256": vocabulary_sha256,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # Through a file object the archive's members are named "archive/...", not after the
        # temporary file name: the same weights give the same bytes (and checkpoint SHA-256).
        torch.save(state, fh)


def damaged_member(path: str | os.PathLike) -> str | None:
    """The first part of a checkpoint (a zip archive, as torch.save writes it) whose bytes fail their CRC-32, or
    None. torch.load does not check them, so a checkpoint damaged inside (a disk, a transfer) loads as other
    weights; a file that is no zip archive is left to torch.load's own error."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError):
        return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[LSTMLanguageModel, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns the model (eval mode) and the record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    damaged = damaged_member(path)
    if damaged:
        raise ValueError(f"{path}: damaged: its part {damaged} does not match its checksum (CRC-32); copy or train "
                         "it again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a lstmscope checkpoint (format is not {CHECKPOINT_FORMAT})")
    config = checkpoint_config(path, state.get("model_config"))
    weights = state.get("state_dict")
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"{path}: holds no weights (state_dict is {type(weights).__name__}, not a mapping of the "
                         "model's tensors); train it again")
    with torch.device("meta"):  # the shapes the config gives, without allocating its weights
        expected = LSTMLanguageModel(config).state_dict()
    check_weights(path, weights, expected)
    model = LSTMLanguageModel(config)
    model.load_state_dict(weights)
    model.eval()
    return model, state


def check_vocabulary(path: str | os.PathLike, record: dict[str, Any], vocabulary_sha256: str,
                     vocabulary_path: str | os.PathLike, error: type[Exception] = ValueError) -> None:
    """The checkpoint ``record`` (of ``path``, from :func:`load_checkpoint`) was trained with the vocabulary of
    ``vocabulary_path``; else ``error`` naming both files (a job reading words by other ids would compute
    nonsense)."""
    if record.get("vocabulary_sha256") != vocabulary_sha256:
        raise error(f"{path}: trained with another vocabulary than {vocabulary_path} (vocabulary_sha256 differs); "
                    "retrain or use the matching vocabulary")


def checkpoint_config(path: str | os.PathLike, config: Any) -> ModelConfig:
    """The checkpoint's ``model_config``: exactly ModelConfig's keys, integers and a dropout, in range; else a
    ValueError naming ``path`` and what is wrong."""
    keys = [f.name for f in fields(ModelConfig)]
    if not isinstance(config, dict):
        raise ValueError(f"{path}: model_config is {type(config).__name__}, not a mapping of {', '.join(keys)}")
    missing, unknown = [k for k in keys if k not in config], sorted(map(str, set(config) - set(keys)))
    if missing or unknown:
        what = "; ".join(([f"lacks {', '.join(missing)}"] if missing else [])
                         + ([f"has unknown keys {', '.join(unknown)}"] if unknown else []))
        raise ValueError(f"{path}: model_config {what} (save_checkpoint writes {', '.join(keys)})")
    for key in keys:
        value = config[key]
        wanted = (int, float) if key == "dropout" else int
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ValueError(f"{path}: model_config {key} is {_short(value)}, not "
                             f"{'a number' if key == 'dropout' else 'an integer'}")
    try:
        return ModelConfig(**config)
    except ValueError as exc:  # out of range: "model config hidden_size=0: must be a positive integer"
        raise ValueError(f"{path}: {exc}") from None


def check_weights(path: str | os.PathLike, weights: dict[str, Any], expected: dict[str, torch.Tensor]) -> None:
    """Every tensor the model of the checkpoint's config has, of its shape, finite, and no other; else a ValueError
    naming ``path`` and the first parameter that is wrong (torch's own message names no file and lists them all)."""
    for name, want in expected.items():
        got = weights.get(name)
        if got is None:
            raise ValueError(f"{path}: parameter {name} is missing from its weights")
        if not isinstance(got, torch.Tensor):
            raise ValueError(f"{path}: parameter {name} is {type(got).__name__}, not a tensor")
        if got.shape != want.shape:
            raise ValueError(f"{path}: parameter {name} has shape {tuple(got.shape)}, but its model_config gives "
                             f"{tuple(want.shape)}")
        if not got.is_floating_point():
            raise ValueError(f"{path}: parameter {name} holds {got.dtype}, not floating-point numbers")
        if not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise ValueError(f"{path}: parameter {name} holds {bad} non-finite values (NaN or inf); train it again")
    unknown = sorted(set(map(str, weights)) - set(expected))
    if unknown:
        raise ValueError(f"{path}: parameter {unknown[0]} is no part of the model its model_config gives")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 over a model's tensors, independent of file layout."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        buf = io.BytesIO()
        buf.write(tensor.detach().cpu().contiguous().numpy().tobytes())
        h.update(buf.getvalue())
    return h.hexdigest()
