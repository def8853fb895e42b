"""Stage model_similarity: linear CKA between every two models' layers on one text, its table and its figure."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from lstmscope.activations import dump_activations
from lstmscope.activations_file import ActivationsError
from lstmscope.similarity import cka_table, model_similarity, read_similarity, similarity_figure_of

from neurons_support import HIDDEN, LAYERS, TEXT, degenerate, tiny  # noqa: F401  (fixtures)
from neurons_support import TextSpec


@pytest.fixture(autouse=True)
def closed_figures():
    yield
    from lstmscope.figures import plt

    plt.close("all")


@pytest.fixture(scope="module")
def three(tiny, degenerate, tmp_path_factory):
    """Activations of TEXT by three real models, named as three dropouts: the trained model, the same with one h unit
    of layer 2 dead, and the one whose layer 2 h is dead throughout (its output gates shut) and whose unit 0 of
    layer 1 is frozen. Listed out of dropout order."""
    d = tmp_path_factory.mktemp("similarity")
    paths = {}
    for name, checkpoint, dropout in (("d0.5_r0", tiny.dead_checkpoint, 0.5), ("d0.2_r0", tiny.checkpoint, 0.2),
                                      ("d0.8_r0", degenerate.checkpoint, 0.8)):
        paths[name] = d / f"{name}.h5"
        dump_activations(checkpoint, tiny.vocabulary, tiny.split, TEXT, paths[name], chunk_tokens=64,
                         model_info={"name": name, "dropout": dropout})
    return paths


def _states(path, key) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][:].astype(np.float64)


def _textbook_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition in the space of the tokens: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XXᵀ and
    L = YYᵀ the tokens' linear kernels, centred by H = I - 11ᵀ/T."""
    t = len(x)
    h = np.eye(t) - 1.0 / t
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def _matrix(table: pd.DataFrame, layer: int, state: str) -> pd.DataFrame:
    s = table[(table.layer == layer) & (table.state == state)]
    return s.pivot(index="model_a", columns="model_b", values="cka")


def test_cka_of_every_two_models_is_the_textbook_formula(three):
    table = cka_table(list(three.values()))
    assert len(table) == LAYERS * 2 * 3 * 3 and set(table.tokens) == {TEXT.tokens} and set(table.text) == {"test"}
    # models by dropout, whatever the order of the files
    assert list(dict.fromkeys(table.model_a)) == ["d0.2_r0", "d0.5_r0", "d0.8_r0"]
    assert table.set_index("model_a")["dropout_a"].groupby(level=0).first().to_dict() == {
        "d0.2_r0": 0.2, "d0.5_r0": 0.5, "d0.8_r0": 0.8}
    for layer in range(1, LAYERS + 1):
        for state in ("h", "c"):
            m = _matrix(table, layer, state)
            for a in m.index:
                for b in m.columns:
                    x, y = _states(three[a], f"layer{layer}/{state}"), _states(three[b], f"layer{layer}/{state}")
                    if (layer, state) == (2, "h") and "d0.8_r0" in (a, b):
                        continue  # a layer that does not vary (below)
                    assert m.loc[a, b] == pytest.approx(_textbook_cka(x, y), rel=1e-9, abs=1e-12), (layer, state, a, b)
    # the model with one dead unit is close to the one it was made from, but not the same
    assert 0.5 < _matrix(table, 2, "h").loc["d0.2_r0", "d0.5_r0"] < 0.9999


def test_a_layer_that_does_not_vary_has_no_cka_and_the_figure_says_so(three, tmp_path, monkeypatch):
    table = cka_table(list(three.values()))
    dead = _matrix(table, 2, "h")  # d0.8_r0's layer 2 h: its output gates shut, h ~ 1e-13 after every token
    assert np.isnan(dead.loc["d0.8_r0"]).all() and np.isnan(dead["d0.8_r0"]).all()
    assert np.isfinite(dead.loc[["d0.2_r0", "d0.5_r0"], ["d0.2_r0", "d0.5_r0"]]).all().all()
    assert np.isfinite(_matrix(table, 2, "c")).all().all()  # its cells live on
    import lstmscope.similarity as similarity

    titles = []
    monkeypatch.setattr("lstmscope.figures.save_figure", lambda fig, *a, **k: titles.extend(
        ax.get_title() for ax in fig.axes))
    similarity.similarity_figure(table, tmp_path / "f.png", tmp_path / "f.svg", "t")
    assert "layer 2, hidden state h\nno CKA: d0.8_r0 hardly vary" in titles
    assert "layer 2, cell state c" in titles


def test_cka_is_blind_to_a_rotation_and_a_scale_of_the_states_and_not_to_their_order(three, tmp_path):
    """A copy of a model's file whose layer 1 h is rotated (any orthogonal map: the neurons mixed) and scaled is
    the same layer to CKA; one whose tokens are shuffled is not."""
    x = _states(three["d0.2_r0"], "layer1/h")
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((HIDDEN, HIDDEN)))
    rotated, shuffled = tmp_path / "rotated.h5", tmp_path / "shuffled.h5"
    for path, name, values in ((rotated, "d0.3_r0", 3.0 * x @ q),
                               (shuffled, "d0.4_r0", x[np.random.default_rng(1).permutation(len(x))])):
        shutil.copy(three["d0.2_r0"], path)
        with h5py.File(path, "a") as f:
            f["layer1/h"][:] = values
            f.attrs["model"], f.attrs["dropout"] = name, float(name[1:4])
    m = _matrix(cka_table([three["d0.2_r0"], rotated, shuffled]), 1, "h")
    assert m.loc["d0.2_r0", "d0.3_r0"] == pytest.approx(1.0, abs=1e-6)  # float32 storage of the rotated values
    assert m.loc["d0.2_r0", "d0.4_r0"] < 0.5


def test_the_blocks_of_tokens_do_not_change_the_result(three):
    whole = cka_table(list(three.values()))
    for rows in (1, 7, 64, 10_000):
        again = cka_table(list(three.values()), rows=rows)
        np.testing.assert_allclose(again.cka, whole.cka, rtol=1e-10, atol=1e-13)


def test_the_table_and_figure_are_written_with_every_pair(three, tmp_path):
    csv, png, svg = tmp_path / "s.csv", tmp_path / "s.png", tmp_path / "s.svg"
    table = model_similarity(list(three.values()), csv)
    drawn = similarity_figure_of(csv, png, svg, dpi=50)
    pd.testing.assert_frame_equal(drawn, read_similarity(csv))
    written = pd.read_csv(csv, dtype={"dropout_a": str, "dropout_b": str})
    assert list(written.columns) == ["text", "tokens", "layer", "state", "model_a", "dropout_a", "model_b",
                                     "dropout_b", "cka"]
    assert sorted(set(written.dropout_a)) == ["0.2", "0.5", "0.8"]  # as the models' names write them
    np.testing.assert_allclose(written.cka, table.cka, rtol=1e-5)
    finite = written.dropna()
    diagonal = finite[finite.model_a == finite.model_b]
    np.testing.assert_allclose(diagonal.cka, 1.0, rtol=1e-12)
    pairs = finite.set_index(["layer", "state", "model_a", "model_b"])["cka"]
    swapped = pairs.copy()
    swapped.index = swapped.index.set_names(["layer", "state", "model_b", "model_a"])
    pd.testing.assert_series_equal(pairs.sort_index(), swapped.reorder_levels(pairs.index.names).sort_index(),
                                   check_names=False)
    image = mpimg.imread(png)
    assert image.shape[0] > 200 and image[..., :3].std() > 0.05
    assert svg.stat().st_size > 5000


def test_files_that_do_not_belong_together_are_refused_by_name(three, tiny, tmp_path):
    a = three["d0.2_r0"]
    other = tmp_path / "other.h5"  # the same model's states of another passage
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TextSpec(name="test", split="test", offset=10,
                     tokens=TEXT.tokens), other, chunk_tokens=64, model_info={"name": "d0.6_r0", "dropout": 0.6})
    twin = tmp_path / "twin.h5"
    shutil.copy(a, twin)
    damaged = tmp_path / "damaged.h5"
    shutil.copy(three["d0.5_r0"], damaged)
    with h5py.File(damaged, "a") as f:
        f["layer2/c"][17, 3] = np.nan
    renamed = tmp_path / "renamed.h5"
    shutil.copy(a, renamed)
    with h5py.File(renamed, "a") as f:
        f.attrs["text"], f.attrs["model"] = "valid", "d0.7_r0"
    shallow = tmp_path / "shallow.h5"  # the same model's file cut to its first layer: another architecture
    shutil.copy(a, shallow)
    with h5py.File(shallow, "a") as f:
        del f["layer2"]
        f.attrs["layers"], f.attrs["model"] = 1, "d0.9_r0"
    cases = [
        ([a, other], f"{other} and {a} both hold text test but not the same tokens"),
        ([a, twin], f"{twin} and {a} are both of model d0.2_r0: give one file per model"),
        ([a, damaged], f"{damaged}: layer2/c of token 17, neuron 3 is nan"),
        ([a, renamed], f"{renamed} holds text valid ({TEXT.tokens} tokens), {a} text test"),
        ([a, shallow], f"{shallow} has 1 layers, {a} 2: give models of one architecture"),
        ([a, tmp_path / "none.h5"], "none.h5"),
        ([], "no activations files given"),
    ]
    for paths, message in cases:
        with pytest.raises(ActivationsError) as err:
            model_similarity(paths, tmp_path / "s.csv")
        assert message in str(err.value) and "\n" not in str(err.value), (paths, str(err.value))
        assert not (tmp_path / "s.csv").exists() and not list(tmp_path.glob(".s.tmp*"))


def test_a_damaged_table_is_refused_by_line_or_pair_before_a_figure_is_drawn(three, tmp_path):
    csv = tmp_path / "s.csv"
    model_similarity(list(three.values()), csv)
    lines = csv.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    cka = header.split(",").index("cka")

    def with_cell(line: int, column: int, value: str) -> list[str]:
        cells = rows[line - 2].split(",")
        cells[column] = value
        return [*rows[:line - 2], ",".join(cells), *rows[line - 1:]]

    cases = [
        (rows[:-1], "layer 2 c lacks models d0.8_r0 and d0.8_r0"),
        ([*rows, rows[0]], "layer 1 h repeats a pair of models"),
        (with_cell(3, cka, "1.5"), "column cka must hold numbers from 0 to 1"),
        (with_cell(4, cka, "abc"), "line 4"),
        (with_cell(5, 0, "valid"), "a similarity table is one text's"),
        (with_cell(6, header.split(",").index("state"), "x"), "column state must hold h or c; line 6 has 'x'"),
        # a layer and state missing whole (a table cut at a group's end): the figure's panel had no matrix
        ([r for r in rows if ",2,c," not in r], "layer 2 c lacks models d0.2_r0 and d0.2_r0"),
        # not a CKA matrix: one way other than the other, a model's own CKA not 1, an empty cell of two live layers
        (with_cell(3, cka, "0.1"), "layer 1 h is not a CKA matrix"),
        (with_cell(2, cka, "0.9"), "layer 1 h is not a CKA matrix"),
        (with_cell(3, cka, ""), "layer 1 h is not a CKA matrix"),
        (with_cell(3, header.split(",").index("dropout_b"), "0.3"), "model d0.5_r0 has more than one dropout"),
    ]
    for body, message in cases:
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join([header, *body]) + "\n")
        with pytest.raises(ValueError) as err:
            similarity_figure_of(bad, tmp_path / "f.png", tmp_path / "f.svg", dpi=40)
        assert message in str(err.value) and "\n" not in str(err.value), (message, str(err.value))
        assert not (tmp_path / "f.png").exists()
