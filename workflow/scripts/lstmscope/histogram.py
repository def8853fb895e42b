"""Histograms of every neuron's values, streamed over the HDF5 chunks of an activations file.

Bins are ``bin_width`` wide on a fixed interval: [-1, 1] for the hidden state h
(tanh times a sigmoid never leaves it) and the configured ``cell_range`` for the
unbounded cell state c. Bin k is [lo + k w, lo + (k + 1) w); the last bin also
holds the upper edge: every value is binned exactly as ``np.histogram`` bins it as a
float64 (given the float32 values themselves, np.histogram computes in float32 and can
put a value on an edge in the neighbouring bin). Values below ``lo`` and above
``hi`` are counted as underflow and overflow, per neuron, never dropped.

The neurons of a block are binned ``group`` (128) at a time: one flat
``np.bincount`` over (neuron, bin) pairs per group, small enough to stay in cache
even for the cell state's thousands of bins. Memory is one block plus the counts,
whatever the text's length. Alongside the counts the same pass keeps, per neuron,
the number of values within ±``near_zero`` (dead neurons), the mean, standard deviation,
mean |value|, minimum and maximum (Chan's parallel update, float64).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import h5py
import numpy as np

from .activations_file import iter_rows, layers_and_states, open_activations, state_dataset
from .atomic import atomic_path, write_table
from .checked_files import group_beyond, number_columns, open_hdf5, read_table
from .provenance import provenance, to_json

if TYPE_CHECKING:  # pandas is imported only where a table is made (the histogram jobs do not need it)
    import pandas as pd

log = logging.getLogger(__name__)

FORMAT = "lstmscope-histograms-1"
H_RANGE = (-1.0, 1.0)


class HistogramError(ValueError):
    """A histogram is empty, missing or inconsistent; the message names the file and key."""


def n_bins(lo: float, hi: float, bin_width: float) -> int:
    """Number of ``bin_width`` bins covering [lo, hi]; the interval must be a whole number of bins."""
    if not hi > lo:
        raise HistogramError(f"histogram range [{lo}, {hi}]: low must be below high")
    if not bin_width > 0:
        raise HistogramError(f"histogram.bin_width={bin_width}: must be positive")
    k = (hi - lo) / bin_width
    if abs(k - round(k)) > 1e-6:
        raise HistogramError(f"histogram range [{lo}, {hi}] is not a whole number of bins of width {bin_width}")
    return int(round(k))


def bin_edges(lo: float, hi: float, bin_width: float) -> np.ndarray:
    """The bin edges, as ``np.histogram(..., bins=n, range=(lo, hi))`` makes them (float64)."""
    return np.linspace(lo, hi, n_bins(lo, hi, bin_width) + 1)


@dataclass
class NeuronHistogram:
    """Counts of one (layer, state) for every neuron, and streaming statistics."""

    lo: float
    hi: float
    bin_width: float
    near_zero: float
    neurons: int
    group: int = 128                             # neurons binned together (one bincount per group and block)
    counts: np.ndarray = field(init=False)       # (N, bins) int64
    underflow: np.ndarray = field(init=False)    # (N,) int64
    overflow: np.ndarray = field(init=False)     # (N,) int64
    near_zero_count: np.ndarray = field(init=False)
    n: int = 0
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)
    mean_abs: np.ndarray = field(init=False)
    minimum: np.ndarray = field(init=False)
    maximum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.edges = bin_edges(self.lo, self.hi, self.bin_width)
        self.bins = len(self.edges) - 1
        if self.group < 1:
            raise HistogramError(f"group={self.group}: must be at least 1")
        N = self.neurons
        # one row of slots per neuron: 0 = underflow, 1..bins, bins + 1 = overflow; the counts and the
        # under/overflow are views of it
        self._all = np.zeros((N, self.bins + 2), dtype=np.int64)
        self.counts = self._all[:, 1:-1]
        self.underflow = self._all[:, 0]
        self.overflow = self._all[:, -1]
        self.near_zero_count = np.zeros(N, dtype=np.int64)
        self.mean = np.zeros(N)
        self.m2 = np.zeros(N)
        self.mean_abs = np.zeros(N)
        self.minimum = np.full(N, np.inf)
        self.maximum = np.full(N, -np.inf)
        # float32 rounding moves a value's bin coordinate by at most ~2.5 ulp of (bins + 2): values
        # closer than this to an edge are binned again exactly
        self._tol = float(4 * np.spacing(np.float32(self.bins + 2)))
        # flat index of (neuron j of a group, slot s) is j * (bins + 2) + s
        self._offsets = (np.arange(min(N, self.group), dtype=np.int64) * (self.bins + 2))[None, :]

    def update(self, block: np.ndarray) -> None:
        """Add a (rows, N) block of values.

        The block is binned ``group`` neurons at a time: the bincount of a group stays in cache
        however many bins (the cell state's interval has thousands) and neurons there are.
        """
        if block.ndim != 2 or block.shape[1] != self.neurons:
            raise HistogramError(f"block of shape {block.shape}: expected (rows, {self.neurons})")
        if not len(block):
            return
        x = np.asarray(block)
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        b_min, b_max = x.min(axis=0), x.max(axis=0)
        if not (np.isfinite(b_min).all() and np.isfinite(b_max).all()):  # min/max propagate NaN
            rows, cols = np.nonzero(~np.isfinite(x))
            raise HistogramError(f"non-finite value (NaN or inf) at token {self.n + int(rows[0])}, neuron {int(cols[0])} "
                                 f"({len(rows)} in tokens {self.n}-{self.n + len(x) - 1})")
        nb, S = len(x), self.bins + 2
        b_sum, b_abs, b_sq = np.empty(self.neurons), np.empty(self.neurons), np.empty(self.neurons)
        b_near = np.empty(self.neurons)
        for g in range(0, self.neurons, self.group):
            xs = x[:, g:g + self.group]
            k = xs.shape[1]
            buf = self._work(nb, k)
            slots = self._slots(xs, buf)
            slots += self._offsets[:, :k]
            self._all[g:g + k] += np.bincount(slots.ravel(), minlength=k * S).reshape(k, S)
            # Column sums as matrix-vector products (BLAS) in float64: sum, sum of |x|, near zero, squares
            ones, x64, f64 = buf["ones"], buf["x64"], buf["f64"]
            np.copyto(x64, xs)
            b_sum[g:g + k] = ones @ x64
            np.abs(x64, out=x64)
            b_abs[g:g + k] = ones @ x64
            np.less_equal(x64, self.near_zero, out=f64, casting="unsafe")
            b_near[g:g + k] = ones @ f64
            np.square(x64, out=x64)
            b_sq[g:g + k] = ones @ x64
        self.near_zero_count += b_near.astype(np.int64)
        # Chan et al.'s parallel update of the mean and the sum of squared deviations
        b_mean = b_sum / nb
        b_m2 = np.maximum(b_sq - b_sum * b_mean, 0.0)
        total = self.n + nb
        delta = b_mean - self.mean
        self.mean += delta * (nb / total)
        self.m2 += b_m2 + delta ** 2 * (self.n * nb / total)
        self.mean_abs += (b_abs - nb * self.mean_abs) / total
        self.n = total
        np.minimum(self.minimum, b_min, out=self.minimum)
        np.maximum(self.maximum, b_max, out=self.maximum)

    def _work(self, rows: int, cols: int) -> dict[str, np.ndarray]:
        """Contiguous (rows, cols) work arrays, allocated once for the largest block and reused."""
        size = rows * min(self.neurons, self.group)  # update() asks for at most one group's columns
        if getattr(self, "_buf", None) is None or self._buf["t"].size < size or self._buf["ones"].size < rows:
            self._buf = None  # free the old arrays first
            self._buf = {"t": np.empty(size, np.float32), "w": np.empty(size, np.float32),
                         "slots": np.empty(size, np.intp), "near": np.empty(size, bool),
                         "x64": np.empty(size, np.float64), "f64": np.empty(size, np.float64),
                         "ones": np.ones(rows)}
        work = {k: v[:rows * cols].reshape(rows, cols) for k, v in self._buf.items() if k != "ones"}
        work["ones"] = self._buf["ones"][:rows]
        return work

    def release(self) -> None:
        """Free the work arrays (the counts and statistics stay)."""
        self._buf = None

    def _slots(self, x: np.ndarray, buf: dict[str, np.ndarray]) -> np.ndarray:
        """Slot of every value: 0 underflow, 1..bins the bins, bins + 1 overflow (intp).

        Fast path in float32; values within rounding distance of a bin edge are
        redone in float64 exactly as ``np.histogram`` bins them.
        """
        t, w, slots, near = buf["t"], buf["w"], buf["slots"], buf["near"]
        scale = self.bins / (self.hi - self.lo)
        np.multiply(x, np.float32(scale), out=t)
        t += np.float32(1.0 - self.lo * scale)
        np.clip(t, np.float32(0.0), np.float32(self.bins + 1), out=t)
        np.floor(t, out=w)
        np.copyto(slots, w, casting="unsafe")
        t -= w                          # position inside the bin, [0, 1)
        t -= np.float32(0.5)
        np.abs(t, out=t)
        np.greater(t, np.float32(0.5 - self._tol), out=near)
        if near.any():
            slots[near] = self._exact_slots(x[near].astype(np.float64))
        return slots

    def _exact_slots(self, x: np.ndarray) -> np.ndarray:
        """np.histogram's own bin assignment (float64 index, corrected against the edges)."""
        f = (x - self.lo) * (self.bins / (self.hi - self.lo))
        k = np.clip(np.floor(f), 0, self.bins - 1).astype(np.int64)
        k = np.where(x < self.edges[k], k - 1, k)
        k = np.where((k < self.bins - 1) & (x >= self.edges[np.clip(k + 1, 0, self.bins)]), k + 1, k)
        k = np.clip(k, 0, self.bins - 1)
        return np.where(x < self.lo, 0, np.where(x > self.hi, self.bins + 1, k + 1))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n) if self.n else np.full(self.neurons, np.nan)


def block_rows(dataset: h5py.Dataset, values: int = 1 << 16) -> int:
    """Rows read at once: whole HDF5 chunks, about ``values`` values (a block that stays in cache)."""
    chunk = dataset.chunks[0] if dataset.chunks else 1024
    return chunk * max(1, values // (chunk * max(1, dataset.shape[1])))


def histogram_of(blocks: Iterable[np.ndarray], neurons: int, lo: float, hi: float, bin_width: float,
                 near_zero: float = 0.01) -> NeuronHistogram:
    """Histogram every neuron over a stream of (rows, N) blocks."""
    hist = NeuronHistogram(lo, hi, bin_width, near_zero, neurons)
    for block in blocks:
        hist.update(block)
    hist.release()
    return hist


def state_range(state: str, cell_range: Sequence[float]) -> tuple[float, float]:
    """The histogram interval of a state: [-1, 1] for h, ``cell_range`` for c."""
    if state == "h":
        return H_RANGE
    if state == "c":
        lo, hi = float(cell_range[0]), float(cell_range[1])
        if not lo < hi:
            raise HistogramError(f"histogram.cell_range={list(cell_range)}: must be [low, high] with low < high")
        return lo, hi
    raise HistogramError(f"state {state!r} does not exist; choose h or c")


def neuron_histograms(activations_path: str | os.PathLike, output_path: str | os.PathLike,
                      range_csv_path: str | os.PathLike, bin_width: float, cell_range: Sequence[float],
                      near_zero: float, rows: int | None = None) -> list[dict]:
    """Histograms of every layer and state of an activations file; returns the range report rows.

    Output HDF5: groups ``layer{l}/{state}`` with ``counts`` (N, bins) int64, ``underflow``,
    ``overflow``, ``near_zero`` (N,) int64, ``mean``, ``std``, ``mean_abs``, ``min``, ``max``
    (N,) float64, ``edges`` (bins + 1,); attributes lo, hi, bin_width, near_zero, n_values.
    """
    report = []
    with open_activations(activations_path) as f:
        pairs = layers_and_states(f)
        results = []
        for layer, state in pairs:
            ds = state_dataset(f, layer, state)
            lo, hi = state_range(state, cell_range)
            try:
                block = rows or block_rows(ds)
                hist = histogram_of((b for _, b in iter_rows(ds, block)), ds.shape[1], lo, hi, bin_width, near_zero)
            except HistogramError as exc:
                raise HistogramError(f"{activations_path}: layer{layer}/{state}: {exc}") from None
            if hist.n == 0:
                raise HistogramError(f"{activations_path}: layer{layer}/{state}: empty histogram (no values)")
            results.append((layer, state, hist))
            under, over = int(hist.underflow.sum()), int(hist.overflow.sum())
            total = hist.n * hist.neurons
            row = {"model": str(f.attrs["model"]), "text": str(f.attrs["text"]), "layer": layer, "state": state,
                   "lo": lo, "hi": hi, "values": total, "underflow": under, "overflow": over,
                   "outside_fraction": (under + over) / total,
                   "neurons_outside": int(((hist.underflow + hist.overflow) > 0).sum()),
                   "min": float(hist.minimum.min()), "max": float(hist.maximum.max()),
                   "p0.1": None, "p99.9": None}
            cdf = np.cumsum(np.concatenate([[hist.underflow.sum()], hist.counts.sum(axis=0), [hist.overflow.sum()]]))
            for q, key in ((0.001, "p0.1"), (0.999, "p99.9")):
                k = int(np.searchsorted(cdf, q * total))  # slot: 0 under, 1..bins, bins + 1 over
                row[key] = float(lo) if k == 0 else float(hi) if k > hist.bins else float(hist.edges[k - 1])
            report.append(row)
            level = logging.WARNING if under + over else logging.INFO
            log.log(level, "layer%d/%s: %d values in [%g, %g]; underflow %d, overflow %d (%.4f%%); range of values "
                    "[%.3f, %.3f]", layer, state, total, lo, hi, under, over, 100 * row["outside_fraction"],
                    row["min"], row["max"])
        attrs = {k: f.attrs[k] for k in ("model", "text", "dropout", "n_tokens", "layers", "hidden_size")
                 if k in f.attrs}
        source_prov = str(f.attrs["provenance"])
    with atomic_path(output_path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs)
        out.attrs["format"] = FORMAT
        out.attrs["provenance"] = to_json(provenance(activations=str(activations_path), bin_width=bin_width,
                                                     cell_range=list(cell_range), near_zero=near_zero,
                                                     activations_provenance=json.loads(source_prov)))
        for layer, state, hist in results:
            g = out.create_group(f"layer{layer}/{state}")
            g.attrs.update({"lo": hist.lo, "hi": hist.hi, "bin_width": hist.bin_width, "near_zero": hist.near_zero,
                            "n_values": hist.n})
            for key, value in (("counts", hist.counts), ("underflow", hist.underflow), ("overflow", hist.overflow),
                               ("near_zero", hist.near_zero_count), ("mean", hist.mean), ("std", hist.std),
                               ("mean_abs", hist.mean_abs), ("min", hist.minimum), ("max", hist.maximum),
                               ("edges", hist.edges)):
                g.create_dataset(key, data=value)
    import pandas as pd  # local: keeps the import of this module light for the streaming path

    write_table(pd.DataFrame(report), range_csv_path, "%.6g")
    return report


@dataclass
class StoredHistogram:
    """One (layer, state) group read back from a histograms file."""

    layer: int
    state: str
    counts: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray
    near_zero: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    mean_abs: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    edges: np.ndarray
    n_values: int
    near_zero_threshold: float

    @property
    def neurons(self) -> int:
        return self.counts.shape[0]


# What read_histograms needs of each (layer, state) group: per-neuron datasets (N values each), the counts
# (N x bins), the bin edges (bins + 1) and two attributes.
PER_NEURON = ("underflow", "overflow", "near_zero", "mean", "std", "mean_abs", "min", "max")
GROUP_ATTRS = ("n_values", "near_zero")


def read_histograms(path: str | os.PathLike) -> tuple[dict, list[StoredHistogram]]:
    """Attributes and every (layer, state) histogram of a histograms file; errors name the file and key, and the
    dataset or attribute that is missing or of the wrong shape."""
    with open_hdf5(path, FORMAT, "histograms", HistogramError) as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        try:
            layers = int(f.attrs["layers"])
        except (KeyError, TypeError, ValueError):
            raise HistogramError(f"{path}: attribute 'layers' is missing or not a number "
                                 "(file incomplete or corrupt)") from None
        _check_file_attrs(attrs, path)
        beyond = group_beyond(f, layers)
        if beyond:
            raise HistogramError(f"{path}: attribute layers={layers}, but it holds group {beyond} (file damaged)")
        out = []
        try:
            for layer in range(1, layers + 1):
                for state in ("h", "c"):
                    out.append(_read_group(f, path, layer, state))
        except HistogramError:
            raise
        except Exception as exc:  # h5py raises various errors on damaged files
            raise HistogramError(f"{path}: corrupt histograms file ({type(exc).__name__}: {exc})") from None
    return attrs, out


def _check_file_attrs(attrs: dict, path: str | os.PathLike) -> None:
    """What the stage copies from the activations file and every table made from the file names its rows by: the
    model and text (non-empty), its dropout (a number) and the provenance (JSON); else an error naming the key (a
    table without them would lose its model from every figure across models)."""
    for key in ("model", "text", "dropout", "provenance"):
        if key not in attrs:
            raise HistogramError(f"{path}: attribute {key!r} is missing (file incomplete or corrupt)")
    for key in ("model", "text"):
        if not isinstance(attrs[key], str) or not attrs[key]:
            raise HistogramError(f"{path}: attribute {key!r} is {attrs[key]!r}, not a name (file damaged)")
    dropout = attrs["dropout"]  # read_histograms made numpy's scalars Python's
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not np.isfinite(dropout):
        raise HistogramError(f"{path}: attribute 'dropout' is {dropout!r}, not a number (file damaged)")
    try:
        json.loads(attrs["provenance"])
    except (TypeError, ValueError):
        raise HistogramError(f"{path}: attribute 'provenance' is not JSON (file damaged)") from None


def _read_group(f: h5py.File, path: str | os.PathLike, layer: int, state: str) -> StoredHistogram:
    key = f"layer{layer}/{state}"
    if key not in f:
        raise HistogramError(f"{path}: group {key!r} is missing")
    g = f[key]
    absent = [name for name in ("counts", "edges", *PER_NEURON) if name not in g]
    if absent:
        raise HistogramError(f"{path}: {key}: dataset {absent[0]!r} is missing (file incomplete or corrupt)")
    absent = [name for name in GROUP_ATTRS if name not in g.attrs]
    if absent:
        raise HistogramError(f"{path}: {key}: attribute {absent[0]!r} is missing (file incomplete or corrupt)")
    for name in ("counts", "edges", *PER_NEURON):
        if not (isinstance(g[name], h5py.Dataset) and np.issubdtype(g[name].dtype, np.number)):
            what = g[name].dtype if isinstance(g[name], h5py.Dataset) else "a group"
            raise HistogramError(f"{path}: {key}: dataset {name!r} holds {what}, not numbers (file damaged)")
    for name, kind in (("n_values", np.integer), ("near_zero", np.number)):
        value = g.attrs[name]
        if not (np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, kind)
                and not isinstance(value, (bool, np.bool_))):
            raise HistogramError(f"{path}: {key}: attribute {name!r} is {value!r}, not "
                                 f"{'a whole number' if kind is np.integer else 'a number'} (file damaged)")
    counts, edges = g["counts"][:], g["edges"][:]
    if counts.ndim != 2 or edges.shape != (counts.shape[1] + 1,):
        raise HistogramError(f"{path}: {key}: counts of shape {counts.shape} do not fit edges of shape {edges.shape}")
    per = {name: g[name][:] for name in PER_NEURON}
    wrong = [name for name, v in per.items() if v.shape != (counts.shape[0],)]
    if wrong:
        raise HistogramError(f"{path}: {key}: dataset {wrong[0]!r} has shape {per[wrong[0]].shape}, "
                             f"expected ({counts.shape[0]},), one value per neuron of 'counts'")
    h = StoredHistogram(layer, state, counts, per["underflow"], per["overflow"], per["near_zero"], per["mean"],
                        per["std"], per["mean_abs"], per["min"], per["max"], edges, int(g.attrs["n_values"]),
                        float(g.attrs["near_zero"]))
    if h.n_values == 0 or h.counts.sum() + h.underflow.sum() + h.overflow.sum() == 0:
        raise HistogramError(f"{path}: {key}: empty histogram (no values)")
    _check_values(h, f"{path}: {key}")
    return h


def _check_values(h: StoredHistogram, where: str) -> None:
    """What every histogram the stage writes holds, checked where a damaged file would otherwise become numbers: an
    infinite KL or every neuron dead, in a table that looks complete."""
    if not (np.all(np.diff(h.edges) > 0) and np.isfinite(h.edges).all()):
        raise HistogramError(f"{where}: edges must rise from the first to the last (file damaged)")
    for name, v in (("counts", h.counts), ("underflow", h.underflow), ("overflow", h.overflow),
                    ("near_zero", h.near_zero)):
        bad = ~np.isfinite(v) | (v < 0) | (v != np.round(v))
        if bad.any():
            j = int(np.argwhere(bad)[0][0])
            raise HistogramError(f"{where}: {name} of neuron {j} is {np.ravel(v[j])[np.ravel(bad[j])][0]:g}; counts "
                                 "are whole numbers from 0 (file damaged)")
    per_neuron = h.counts.sum(axis=1) + h.underflow + h.overflow
    for name, total in (("counts with underflow and overflow", per_neuron), ("near_zero", h.near_zero)):
        off = total != h.n_values if name != "near_zero" else total > h.n_values
        if off.any():
            j = int(np.argmax(off))
            raise HistogramError(f"{where}: {name} of neuron {j} {'sum to' if name != 'near_zero' else 'is'} "
                                 f"{total[j]:g}, but n_values is {h.n_values} (file damaged)")
    for name, v in (("mean", h.mean), ("std", h.std), ("mean_abs", h.mean_abs), ("min", h.minimum),
                    ("max", h.maximum)):
        if not np.isfinite(v).all():
            j = int(np.argmax(~np.isfinite(v)))
            raise HistogramError(f"{where}: {name} of neuron {j} is {v[j]:g} (file damaged)")


def select(histograms: Sequence[StoredHistogram], layer: int, state: str) -> StoredHistogram:
    """The histogram of one layer and state; an error lists those that exist."""
    for h in histograms:
        if h.layer == layer and h.state == state:
            return h
    have = ", ".join(f"layer{h.layer}/{h.state}" for h in histograms)
    raise HistogramError(f"layer {layer} / state {state!r} does not exist; have {have}")



# the columns of the range report neuron_histograms writes, one row per layer and state
RANGE_COLUMNS = ["model", "text", "layer", "state", "lo", "hi", "values", "underflow", "overflow", "outside_fraction",
                 "neurons_outside", "min", "max", "p0.1", "p99.9"]
RANGE_NUMBERS = [c for c in RANGE_COLUMNS if c not in ("model", "text", "state")]


def histogram_range_table(paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike) -> "pd.DataFrame":
    """All range reports in one table: how much of each layer and state fell outside its interval."""
    import pandas as pd

    frames = []
    for p in paths:  # each report as it is read: a part that is empty or short of a column is named, not dropped
        frame = read_table(p, RANGE_COLUMNS, "histogram range report", HistogramError)
        states = sorted(set(map(str, frame["state"])) - {"h", "c"})
        if states:
            raise HistogramError(f"{p}: state {states[0]!r} is neither h nor c")
        number_columns(frame, RANGE_NUMBERS, p, HistogramError,
                       whole=("layer", "values", "underflow", "overflow", "neurons_outside"))
        frames.append(frame)
    if not frames:
        raise HistogramError("no histogram range reports given")
    table = pd.concat(frames, ignore_index=True)
    write_table(table, csv_path, "%.6g")
    outside = table[(table["underflow"] + table["overflow"]) > 0]
    for r in outside.itertuples():
        log.warning("%s/%s layer%d/%s: %d below %g and %d above %g (%.4f%% of values)", r.model, r.text, r.layer,
                    r.state, r.underflow, r.lo, r.overflow, r.hi, 100 * r.outside_fraction)
    return table
