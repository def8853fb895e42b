"""neuron_histograms: counts equal np.histogram's, nothing is dropped, memory does not grow with the text."""
from __future__ import annotations

import io
import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest

from lstmscope.activations import TextSpec, dump_activations
from lstmscope.histogram import (HistogramError, NeuronHistogram, bin_edges, histogram_of, histogram_range_table,
                                 neuron_histograms, read_histograms, select, state_range)

from neurons_support import HIDDEN, LAYERS, tiny  # noqa: F401  (fixture)


def _np_counts(x: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """The baseline: np.histogram, one neuron at a time."""
    return np.stack([np.histogram(x[:, j].astype(np.float64), bins=bins, range=(lo, hi))[0] for j in range(x.shape[1])])


def _blocks(x: np.ndarray, rows: int):
    return (x[i:i + rows] for i in range(0, len(x), rows))


@pytest.mark.parametrize("key, lo, hi", [("layer1/h", -1.0, 1.0), ("layer2/c", -1.0, 1.0), ("layer2/c", -0.07, 0.09)])
def test_counts_equal_np_histogram_per_neuron_and_outside_values_are_counted(tiny, key, lo, hi):
    with h5py.File(tiny.activations) as f:
        x = f[key][:]
    bins = int(round((hi - lo) / 0.01))
    hist = histogram_of(_blocks(x, 64), HIDDEN, lo, hi, 0.01)
    np.testing.assert_array_equal(hist.counts, _np_counts(x, lo, hi, bins))
    np.testing.assert_array_equal(hist.underflow, (x < lo).sum(axis=0))
    np.testing.assert_array_equal(hist.overflow, (x > hi).sum(axis=0))
    assert (hist.counts.sum(axis=1) + hist.underflow + hist.overflow == len(x)).all()
    if key == "layer2/c" and lo == -0.07:
        assert hist.underflow.sum() > 0 and hist.overflow.sum() > 0  # the narrow interval really cuts


def test_values_on_bin_edges_land_where_np_histogram_puts_them(tiny, tmp_path):
    # float16 values fall exactly on many edges (0, ±0.25, ±0.5, ±1, ...): the hard case for fast binning
    with h5py.File(tiny.activations) as f:
        x = np.concatenate([f["layer1/h"][:], f["layer2/c"][:]]).astype(np.float16).astype(np.float32)
    x[:3] = [[v] * HIDDEN for v in (-1.0, 0.0, 1.0)]
    # a negative value too small to move x - lo off the edge of 0 (float64 floor gives 0's bin, it is the bin below)
    x[3:6] = [[v] * HIDDEN for v in (-1e-17, -np.finfo(np.float32).smallest_subnormal, 1e-17)]
    for lo, hi in ((-1.0, 1.0), (-0.5, 0.75)):
        hist = histogram_of(_blocks(x, 100), HIDDEN, lo, hi, 0.01)
        np.testing.assert_array_equal(hist.counts, _np_counts(x, lo, hi, int(round((hi - lo) / 0.01))))
    edges = bin_edges(-1.0, 1.0, 0.01)
    np.testing.assert_array_equal(edges, np.histogram_bin_edges([0], bins=200, range=(-1, 1)))


def test_streaming_statistics_equal_numpy_on_the_whole_matrix(tiny):
    with h5py.File(tiny.activations) as f:
        x = f["layer2/c"][:]
    hist = histogram_of(_blocks(x, 37), HIDDEN, -1, 1, 0.01, near_zero=0.01)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(hist.mean, x64.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hist.std, x64.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(hist.mean_abs, np.abs(x64).mean(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(hist.minimum, x.min(axis=0))
    np.testing.assert_array_equal(hist.maximum, x.max(axis=0))
    np.testing.assert_array_equal(hist.near_zero_count, (np.abs(x) <= 0.01).sum(axis=0))
    one_block = histogram_of([x], HIDDEN, -1, 1, 0.01)
    np.testing.assert_array_equal(one_block.counts, hist.counts)


@pytest.mark.parametrize("group", [1, 5, HIDDEN - 1, HIDDEN, 4 * HIDDEN])
def test_neurons_binned_in_groups_give_the_same_counts_and_statistics(tiny, group):
    # several groups per block, a last group that is not full, blocks of different heights
    with h5py.File(tiny.activations) as f:
        x = f["layer2/c"][:]
    hist = NeuronHistogram(-0.5, 0.5, 0.01, 0.01, HIDDEN, group=group)
    for start, rows in ((0, 7), (7, 100), (107, 1), (108, len(x))):
        hist.update(x[start:start + rows])
    np.testing.assert_array_equal(hist.counts, _np_counts(x, -0.5, 0.5, 100))
    np.testing.assert_array_equal(hist.underflow, (x < -0.5).sum(axis=0))
    np.testing.assert_array_equal(hist.overflow, (x > 0.5).sum(axis=0))
    np.testing.assert_array_equal(hist.near_zero_count, (np.abs(x) <= 0.01).sum(axis=0))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(hist.mean, x64.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hist.std, x64.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(hist.mean_abs, np.abs(x64).mean(axis=0), rtol=1e-9)
    with pytest.raises(HistogramError, match="group=0"):
        NeuronHistogram(-1, 1, 0.01, 0.01, HIDDEN, group=0)


def test_peak_memory_does_not_grow_with_the_number_of_tokens(tiny):
    with h5py.File(tiny.activations) as f:
        block = f["layer2/c"][:256]

    def peak(n_blocks: int) -> int:
        tracemalloc.start()
        hist = histogram_of((block for _ in range(n_blocks)), HIDDEN, -10, 10, 0.01)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert hist.n == 256 * n_blocks
        return top

    small, large = peak(4), peak(64)  # 1 024 vs 16 384 tokens
    assert large < 1.1 * small + 50_000, (small, large)


def test_neuron_histograms_file_and_range_report(tiny, tmp_path):
    out, ranges = tmp_path / "histograms.h5", tmp_path / "ranges.csv"
    report = neuron_histograms(tiny.activations, out, ranges, bin_width=0.01, cell_range=[-0.5, 0.5], near_zero=0.01)
    attrs, hists = read_histograms(out)
    assert attrs["model"] == "d0.2_r0" and attrs["n_tokens"] == 400
    assert [(h.layer, h.state) for h in hists] == [(k, s) for k in range(1, LAYERS + 1) for s in ("h", "c")]
    c = select(hists, 2, "c")
    assert c.counts.shape == (HIDDEN, 100) and c.edges[0] == -0.5 and c.edges[-1] == 0.5
    h = select(hists, 1, "h")
    assert h.counts.shape == (HIDDEN, 200) and h.underflow.sum() == 0 and h.overflow.sum() == 0
    table = pd.read_csv(ranges)
    assert len(table) == len(report) == 2 * LAYERS
    with h5py.File(tiny.activations) as f:
        x = f["layer2/c"][:]
    row = table[(table.layer == 2) & (table.state == "c")].iloc[0]
    assert row.underflow == (x < -0.5).sum() and row.overflow == (x > 0.5).sum() and row["values"] == x.size
    outside = (x < -0.5) | (x > 0.5)
    assert row.outside_fraction == pytest.approx(outside.mean(), rel=1e-5)
    assert row.neurons_outside == outside.any(axis=0).sum()
    assert row["min"] == pytest.approx(x.min(), rel=1e-5) and row["max"] == pytest.approx(x.max(), rel=1e-5)
    combined = histogram_range_table([ranges, ranges], tmp_path / "all.csv")
    assert len(combined) == 2 * len(table)


def test_bad_input_is_one_clear_error(tiny, tmp_path):
    with pytest.raises(HistogramError, match=r"^non-finite value \(NaN or inf\) at token 3, neuron 1 \(2 in tokens 2-4\)$"):
        histogram_of([np.zeros((2, 2), dtype=np.float32),
                      np.array([[0.1, 0.2], [0.3, np.nan], [-np.inf, 0.0]], dtype=np.float32)], 2, -1, 1, 0.01)
    with pytest.raises(HistogramError, match=r"expected \(rows, 3\)"):
        NeuronHistogram(-1, 1, 0.01, 0.01, 3).update(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(HistogramError, match="not a whole number of bins"):
        bin_edges(-1.0, 1.005, 0.01)
    with pytest.raises(HistogramError, match=r"histogram.cell_range=\[2.0, 1.0\]"):
        state_range("c", [2.0, 1.0])
    with pytest.raises(HistogramError, match="state 'x' does not exist"):
        state_range("x", [-1, 1])
    with pytest.raises(HistogramError, match="nothing.h5: histograms file not found"):
        read_histograms(tmp_path / "nothing.h5")
    # an empty histogram is refused when read back
    out, ranges = tmp_path / "h.h5", tmp_path / "r.csv"
    neuron_histograms(tiny.activations, out, ranges, 0.01, [-1, 1], 0.01)
    with h5py.File(out, "a") as f:
        g = f["layer1/c"]
        g["counts"][...] = 0
        g["underflow"][...] = 0
        g["overflow"][...] = 0
    with pytest.raises(HistogramError, match=r"h.h5: layer1/c: empty histogram"):
        read_histograms(out)
    with pytest.raises(ValueError, match="missing.h5: activations file not found"):
        neuron_histograms(tmp_path / "missing.h5", out, ranges, 0.01, [-1, 1], 0.01)


def test_a_one_token_text_still_histograms(tiny, tmp_path):
    one = tmp_path / "one.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TextSpec("one", "test", 5, 1), one)
    report = neuron_histograms(one, tmp_path / "h.h5", tmp_path / "r.csv", 0.01, [-1, 1], 0.01)
    assert len(report) == 2 * LAYERS and all(r["values"] == HIDDEN for r in report)


def _damage(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)


@pytest.mark.parametrize("edit,message", [
    (lambda f: f.attrs.__delitem__("layers"), r"attribute 'layers' is missing or not a number"),
    (lambda f: f.__delitem__("layer2"), r"group 'layer2/h' is missing"),
    (lambda f: f["layer1/c"].__delitem__("counts"), r"layer1/c: dataset 'counts' is missing"),
    (lambda f: f["layer2/h"].__delitem__("mean_abs"), r"layer2/h: dataset 'mean_abs' is missing"),
    (lambda f: f["layer1/h"].attrs.__delitem__("n_values"), r"layer1/h: attribute 'n_values' is missing"),
    (lambda f: (f["layer1/h"].__delitem__("std"), f["layer1/h"].create_dataset("std", data=np.zeros(3))),
     rf"layer1/h: dataset 'std' has shape \(3,\), expected \({HIDDEN},\)"),
    (lambda f: (f["layer2/c"].__delitem__("edges"), f["layer2/c"].create_dataset("edges", data=np.zeros(5))),
     r"layer2/c: counts of shape .* do not fit edges of shape \(5,\)"),
    (lambda f: f.attrs.__setitem__("layers", 1), r"attribute layers=1, but it holds group layer2 \(file damaged\)"),
    (lambda f: f.attrs.__delitem__("model"), r"attribute 'model' is missing"),
    (lambda f: f.attrs.__setitem__("text", ""), r"attribute 'text' is '', not a name"),
    (lambda f: f.attrs.__setitem__("dropout", "x"), r"attribute 'dropout' is 'x', not a number"),
    (lambda f: f.attrs.__delitem__("provenance"), r"attribute 'provenance' is missing"),
    (lambda f: f["layer1/h"].attrs.__setitem__("n_values", "x"),
     r"layer1/h: attribute 'n_values' is 'x', not a whole number"),
    (lambda f: (f["layer2/h"].__delitem__("min"), f["layer2/h"].create_dataset("min", data=["a"] * HIDDEN)),
     r"layer2/h: dataset 'min' holds object, not numbers"),
], ids=["layers", "group", "counts", "mean_abs", "n_values", "std-shape", "edges-shape", "layers-too-few", "model",
        "text", "dropout", "provenance", "n_values-text", "min-text"])
def test_a_histograms_file_missing_a_part_is_one_error_naming_the_file_and_part(tiny, tmp_path, edit, message):
    out = tmp_path / "h.h5"
    neuron_histograms(tiny.activations, out, tmp_path / "r.csv", 0.01, [-1, 1], 0.01)
    read_histograms(out)  # whole, it reads
    _damage(out, edit)
    with pytest.raises(HistogramError, match=rf"^{out}: {message}"):
        read_histograms(out)


def test_a_truncated_histograms_file_is_one_error_naming_it(tiny, tmp_path):
    out = tmp_path / "h.h5"
    neuron_histograms(tiny.activations, out, tmp_path / "r.csv", 0.01, [-1, 1], 0.01)
    size = out.stat().st_size
    with open(out, "r+b") as fh:  # a copy cut short
        fh.truncate(size * 6 // 10)
    with pytest.raises(HistogramError, match=rf"^{out}: (not a readable HDF5 file|corrupt histograms file) \("):
        read_histograms(out)


def test_range_report_quantiles_are_the_bin_edge_below_the_order_statistic(tiny, tmp_path):
    """p0.1 / p99.9: the value below which 0.1 % / 99.9 % of the layer's values lie, given as the lower edge of its
    bin (the interval's lo or hi where it lies outside): worked out here from the sorted values."""
    ranges = tmp_path / "r.csv"
    lo, hi, width = -0.3, 0.3, 0.01
    neuron_histograms(tiny.activations, tmp_path / "h.h5", ranges, width, [lo, hi], 0.01)
    table = pd.read_csv(ranges)
    outside = 0
    with h5py.File(tiny.activations) as f:
        for _, row in table.iterrows():
            x = np.sort(f[f"layer{row.layer}/{row.state}"][:].ravel())
            a, b = (-1.0, 1.0) if row.state == "h" else (lo, hi)
            edges = np.linspace(a, b, int(round((b - a) / width)) + 1)
            for q, got in ((0.001, row["p0.1"]), (0.999, row["p99.9"])):
                v = x[int(np.ceil(q * x.size)) - 1]
                want = a if v < a else b if v > b else edges[min(np.searchsorted(edges, v, "right") - 1, len(edges) - 2)]
                outside += bool(v < a or v > b)
                assert got == pytest.approx(want, abs=1e-6), (row.layer, row.state, q, v)
    assert outside > 0  # a quantile outside the interval: met


def test_near_zero_counts_values_on_the_threshold(tmp_path):
    """A value whose |value| equals the threshold counts as near zero ("within ±threshold"); 0.25 is exact in
    float32, so values lie on it exactly."""
    x = np.array([[0.25, -0.25], [np.nextafter(np.float32(0.25), np.float32(1)), 0.3],
                  [0.0, -0.24], [-0.26, np.nextafter(np.float32(-0.25), np.float32(0))]], dtype=np.float32)
    hist = histogram_of([x[:2], x[2:]], 2, -1, 1, 0.01, near_zero=0.25)
    assert hist.near_zero_count.tolist() == (np.abs(x) <= np.float32(0.25)).sum(axis=0).tolist() == [2, 3]


def _copy_with(src, dst, edit):
    import shutil

    shutil.copyfile(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def test_a_non_finite_activation_stops_the_histograms_naming_file_state_token_and_neuron(tiny, tmp_path):
    def poison(f):
        f["layer2/c"][10, 3] = np.nan

    bad = _copy_with(tiny.activations, tmp_path / "nan.h5", poison)
    out, ranges = tmp_path / "h.h5", tmp_path / "r.csv"
    with pytest.raises(HistogramError, match=rf"^{bad}: layer2/c: non-finite value \(NaN or inf\) at token 10, neuron 3 "):
        neuron_histograms(bad, out, ranges, 0.01, [-1, 1], 0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]  # nothing written, no temporary file left


def test_an_activations_file_with_a_short_dataset_is_refused_naming_it(tiny, tmp_path):
    from lstmscope.activations_file import ActivationsError

    def shorten(f):
        rows = f["layer1/h"][:-1]
        del f["layer1/h"]
        f.create_dataset("layer1/h", data=rows)

    bad = _copy_with(tiny.activations, tmp_path / "short.h5", shorten)
    with pytest.raises(ActivationsError, match=rf"^{bad}: dataset 'layer1/h' has 399 rows, expected n_tokens=400$"):
        neuron_histograms(bad, tmp_path / "h.h5", tmp_path / "r.csv", 0.01, [-1, 1], 0.01)
    assert not (tmp_path / "h.h5").exists() and not (tmp_path / "r.csv").exists()


def test_the_range_table_names_a_missing_report_and_writes_nothing(tiny, tmp_path):
    ranges = tmp_path / "r.csv"
    neuron_histograms(tiny.activations, tmp_path / "h.h5", ranges, 0.01, [-1, 1], 0.01)
    out = tmp_path / "all.csv"
    with pytest.raises(HistogramError, match=rf"^{tmp_path / 'gone.csv'}: histogram range report not found$"):
        histogram_range_table([ranges, tmp_path / "gone.csv"], out)
    assert not out.exists()


@pytest.mark.parametrize("edit, said", [
    (lambda text: "", "not a readable CSV (No columns to parse from file)"),
    (lambda text: text.splitlines()[0] + "\n", "histogram range report is empty"),  # the header alone: no model
    (lambda text: pd.read_csv(io.StringIO(text)).drop(columns="state").to_csv(index=False),
     "missing columns state"),
    (lambda text: text.replace(",h,", ",x,", 1), "state 'x' is neither h nor c"),
    (lambda text: pd.read_csv(io.StringIO(text)).astype({"values": object}).assign(values="abc").to_csv(index=False),
     "column values must hold whole numbers; line 2 has 'abc'"),
    (lambda text: pd.read_csv(io.StringIO(text)).assign(underflow=float("nan")).to_csv(index=False),
     "column underflow must hold whole numbers; line 2 has no value (an empty cell or nan)"),
    (lambda text: pd.read_csv(io.StringIO(text)).assign(layer=1.5).to_csv(index=False),
     "column layer must hold whole numbers; line 2 has 1.5"),
    (lambda text: pd.read_csv(io.StringIO(text)).assign(overflow=float("inf")).to_csv(index=False),
     "column overflow must hold whole numbers; line 2 has inf"),
])
def test_a_range_report_that_is_empty_or_lacks_a_column_is_one_error_naming_it(tiny, tmp_path, edit, said):
    """Read as it stands, an empty part stopped the table with pandas' unnamed EmptyDataError, and a part of the
    header alone or without its state was joined in: a model silently missing, or a state of NaN."""
    ranges = tmp_path / "r.csv"
    neuron_histograms(tiny.activations, tmp_path / "h.h5", ranges, 0.01, [-1, 1], 0.01)
    bad = tmp_path / "bad.csv"
    bad.write_text(edit(ranges.read_text()))
    out = tmp_path / "all.csv"
    with pytest.raises(HistogramError) as err:
        histogram_range_table([ranges, bad], out)
    assert str(err.value) == f"{bad}: {said}"
    assert not out.exists()
