"""LSTM gates: how often each gate of each unit is shut or wide open, and how long each cell remembers.

Unit j of layer k computes, after token t, from the layer's input x_t (the token's embedding in layer 1, the h of the
layer below otherwise) and its own h_{t-1} (gate order as ``nn.LSTM``'s)::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     input gate: how much of the candidate enters the cell
    f = sigmoid(...)                               forget gate: how much of the cell is kept
    g = tanh(...)                                  the candidate
    o = sigmoid(...)                               output gate: how much of tanh(c) is shown as h
    c_t = f c_{t-1} + i g,    h_t = o tanh(c_t)

The activations file holds h and c of every token, not the gates. They are computed again here from the file's h and
the checkpoint's weights, all tokens of a block in two matrix products, and checked against the file: f c_{t-1} + i g
must give its c_t and o tanh(c_t) its h_t (the largest difference is logged; beyond :data:`TOLERANCE` the file is not
this checkpoint's and the job stops). A float16 file gives the gates of its rounded states.

Per unit and gate (``input``, ``forget``, ``cell`` for the candidate g, ``output``):

``<gate>_mean``       the gate's mean over the text
``<gate>_left``       the share of tokens where it is shut: below ``saturation``; for g, which is a value written
                      into the cell and closes nothing, where it is saturated low: below -1 + 2 saturation
``<gate>_right``      the share where it is wide open: above 1 - saturation (g: saturated high, above
                      1 - 2 saturation; the same points, as tanh(x) = 2 sigmoid(2x) - 1)
``forget_timescale``  1 / mean_t(-ln f_t), in tokens: a cell given no input keeps exp(-sum of -ln f) of itself, so
                      at the forget gate's average rate it falls to 1/e of its value in this many tokens (-ln f is
                      computed as softplus(-z) of the gate's pre-activation z in float64, so a gate that rounds to 1
                      in float32 still counts: finite unless z stays above about 710 on every token, where the
                      timescale, about e^z tokens, is beyond float64's range)

The saturation plot of Karpathy, Johnson & Fei-Fei (2015), *Visualizing and understanding recurrent networks*, Fig. 3
(with 0.1, for i, f and o; the candidate's panel is this project's) draws ``left`` against ``right``, a point per unit
and gate.
"""
from __future__ import annotations

import ctypes
import logging
import os

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .ablation import check_dumped_from, check_ids_in_vocabulary
from .ablation_file import AblationError
from .activations import ieee_float32
from .activations_file import open_activations, state_dataset
from .atomic import write_table
from .gate_table import COLUMNS, GATES
from .model import load_checkpoint
from .provenance import sha256_file

log = logging.getLogger(__name__)

#: Largest difference, relative to 1 + |value|, allowed between the c and h the gates give and the file's, by the
#: file's dtype (float32: the last bits of the dump's own arithmetic, < 1e-6 in the default run; float16: its rounding
#: of h, c and the inputs, up to 6.3e-4 in float16 dumps of two default models, d0.0_r0 and d0.8_r0).
TOLERANCE = {"float32": 1e-4, "float16": 5e-3}
#: Tokens per block (rows of the file read at once); memory does not grow with the text.
BLOCK_TOKENS = 2048


class GateError(ValueError):
    """A gate statistic that cannot be computed from its inputs, naming the file or the setting."""


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Have glibc's malloc hand every allocation of ``nbytes`` or more to mmap, and so back to the system when freed.
    By default glibc raises that threshold each time such a block is freed, so the blocks' arrays, allocated and freed
    in turn, come from the heap and fragment it: at the thesis's width the job's memory grew by 50-100 MB per block
    (2.27 GB at 10 000 tokens); with the fixed threshold it stays at ~1.56 GB. False where there is no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, int(nbytes)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def check_saturation(saturation: float) -> None:
    if not 0 < saturation < 0.5:
        raise GateError(f"gates.saturation={saturation}: must be between 0 and 0.5 (a gate below it is shut, above "
                        f"1 - it wide open)")


def gate_values(x: torch.Tensor, h_prev: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The four gates (B, 4, N) of every step of a block (i, f, g, o, activated), and -ln f (B, N, float64) from the
    forget gate's pre-activation z as softplus(-z), which stays above 0 where f rounds to 1."""
    z = torch.addmm(bias, x, weight_ih.t()).addmm_(h_prev, weight_hh.t())
    n = weight_hh.shape[1]
    z = z.view(len(x), 4, n)
    gates = torch.sigmoid(z)
    gates[:, 2] = torch.tanh(z[:, 2])
    return gates, F.softplus(-z[:, 1].double())


def finite(dataset, start: int, stop: int) -> np.ndarray:
    """Rows [``start``, ``stop``) of a (T, N) state dataset as float32; a value that is not finite (no LSTM state is)
    is a :class:`GateError` naming the file, the dataset, the token and the unit (a NaN would pass every comparison
    and leave the table's cells empty)."""
    rows = dataset[start:stop].astype(np.float32, copy=False)
    bad = ~np.isfinite(rows)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise GateError(f"{dataset.file.filename}: {dataset.name.lstrip('/')} of token {start + int(t)}, unit {int(j)} "
                        f"is {rows[t, j]:g}, which no LSTM state is (the file is damaged; dump it again)")
    return rows


def layer_gate_statistics(f, model, layer: int, ids: np.ndarray, saturation: float,
                          block_tokens: int = BLOCK_TOKENS) -> tuple[dict[str, np.ndarray], float]:
    """The statistics of every unit of ``layer`` (1-based) of the open activations file ``f``, as columns, and the
    largest relative difference between the c and h the gates give and the file's."""
    rnn = model.rnn
    k = layer - 1
    w_ih = getattr(rnn, f"weight_ih_l{k}").detach()
    w_hh = getattr(rnn, f"weight_hh_l{k}").detach()
    bias = (getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).detach()
    n = w_hh.shape[1]
    h_ds, c_ds = state_dataset(f, layer, "h"), state_dataset(f, layer, "c")
    below_ds = state_dataset(f, layer - 1, "h") if layer > 1 else None
    T = int(f.attrs["n_tokens"])
    low = np.array([saturation, saturation, -1 + 2 * saturation, saturation], dtype=np.float32)[None, :, None]
    high = np.array([1 - saturation, 1 - saturation, 1 - 2 * saturation, 1 - saturation],
                    dtype=np.float32)[None, :, None]
    sums = np.zeros((4, n))
    left = np.zeros((4, n), dtype=np.int64)
    right = np.zeros((4, n), dtype=np.int64)
    decay = np.zeros(n)
    worst = 0.0
    for start in range(0, T, block_tokens):
        stop = min(T, start + block_tokens)
        first = max(0, start - 1)                 # the row before the block: h_{t-1}, c_{t-1} of its first token
        h = torch.from_numpy(finite(h_ds, first, stop))
        c = torch.from_numpy(finite(c_ds, first, stop))
        if start == 0:                            # the stream starts from the zero state
            h, c = torch.cat([torch.zeros(1, n), h]), torch.cat([torch.zeros(1, n), c])
        if below_ds is None:
            x = model.encoder.weight.detach()[torch.from_numpy(ids[start:stop])]
        else:
            x = torch.from_numpy(finite(below_ds, start, stop))
        gates, neg_log_f = gate_values(x, h[:-1], w_ih, w_hh, bias)
        c_new = gates[:, 1] * c[:-1] + gates[:, 0] * gates[:, 2]
        h_new = gates[:, 3] * torch.tanh(c[1:])
        for got, want in ((c_new, c[1:]), (h_new, h[1:])):
            worst = max(worst, float(((got - want).abs() / (1 + want.abs())).max()))
        g = gates.numpy()
        sums += g.sum(axis=0, dtype=np.float64)
        left += (g < low).sum(axis=0)
        right += (g > high).sum(axis=0)
        decay += neg_log_f.numpy().sum(axis=0, dtype=np.float64)
    columns = {}
    for j, gate in enumerate(GATES):
        columns[f"{gate}_mean"] = sums[j] / T
        columns[f"{gate}_left"] = left[j] / T
        columns[f"{gate}_right"] = right[j] / T
    with np.errstate(divide="ignore", over="ignore"):  # inf: decay 0 or a timescale beyond float64's range
        columns["forget_timescale"] = T / decay
    return columns, worst


def gate_statistics(checkpoint_path: str | os.PathLike, activations_path: str | os.PathLike,
                    csv_path: str | os.PathLike, saturation: float, block_tokens: int = BLOCK_TOKENS
                    ) -> pd.DataFrame:
    """The gate statistics of every unit of every layer of one model and text (see the module's docstring), written
    to ``csv_path``."""
    check_saturation(saturation)
    fixed_mmap_threshold()
    try:
        model, _ = load_checkpoint(checkpoint_path)
    except (FileNotFoundError, ValueError) as exc:
        raise GateError(str(exc)) from None
    checkpoint_sha = sha256_file(checkpoint_path)
    rows = []
    with open_activations(activations_path) as f, torch.inference_mode(), ieee_float32():
        L = int(f.attrs["layers"])
        ids = f["tokens/ids"][:].astype(np.int64)
        try:  # the ablation's checks of the same pairing: this checkpoint's file, ids of its vocabulary
            check_dumped_from(f, checkpoint_sha, checkpoint_path, activations_path)
            check_ids_in_vocabulary(ids, int(model.config.vocab_size), activations_path, checkpoint_path)
        except AblationError as exc:
            raise GateError(str(exc)) from None
        dtype = str(f.attrs["dtype"])
        if dtype not in TOLERANCE:
            raise GateError(f"{activations_path}: attribute dtype is {dtype!r}, not one of {', '.join(TOLERANCE)}: "
                            "the file is damaged; dump it again")
        tolerance = TOLERANCE[dtype]
        for layer in range(1, L + 1):
            columns, worst = layer_gate_statistics(f, model, layer, ids, saturation, block_tokens)
            log.info("layer %d: the gates give the file's c and h to %.2g (relative to 1 + |value|; %s file)",
                     layer, worst, dtype)
            if not worst <= tolerance:
                raise GateError(f"{activations_path}: layer {layer}'s gates, computed from the file's h and the weights "
                                f"of {checkpoint_path}, give c and h that differ from the file's by {worst:.3g} "
                                f"(more than {tolerance:g} for a {dtype} file): the file is damaged or not this "
                                "checkpoint's; dump it again")
            frame = pd.DataFrame(columns)
            frame.insert(0, "neuron", np.arange(len(frame)))
            frame.insert(0, "layer", layer)
            rows.append(frame)
        model_name, text, dropout = str(f.attrs["model"]), str(f.attrs["text"]), float(f.attrs["dropout"])
    table = pd.concat(rows, ignore_index=True)
    table.insert(0, "saturation", saturation)
    table.insert(0, "dropout", dropout)
    table.insert(0, "text", text)
    table.insert(0, "model", model_name)
    table = table[COLUMNS]
    write_table(table, csv_path, "%.6g")
    for layer, view in table.groupby("layer"):
        log.info("layer %d: %s; forget timescale median %.3g tokens, largest %.3g", layer,
                 ", ".join(f"{g} {'low' if g == 'cell' else 'shut'} {view[f'{g}_left'].mean():.1%} "
                           f"{'high' if g == 'cell' else 'open'} {view[f'{g}_right'].mean():.1%}" for g in GATES),
                 view["forget_timescale"].median(), view["forget_timescale"].max())
    return table
