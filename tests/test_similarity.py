"""Stage model_similarity: linear CKA between every two models' layers on one text, its table and its figure."""
from __future__ import annotations

import itertools
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from scipy.optimize import linear_sum_assignment

from lstmscope.activations import dump_activations
from lstmscope.activations_file import ActivationsError
from lstmscope.neuron_matches import matches_figure_of, per_neuron, read_matches
from lstmscope.similarity import (cka_table, model_similarity, one_to_one, read_similarity, rotations,
                                  similarity_figure_of, similarity_tables)

from neurons_support import HIDDEN, LAYERS, TEXT, degenerate, tiny  # noqa: F401  (fixtures)
from neurons_support import TextSpec, write_divergence


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


# --- the neuron matches, read off the same Gram matrices ---------------------------------------------------------

def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of every column of x with every column of y (NaN for a column that does not vary)."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x.T @ y) / np.sqrt(np.outer((x * x).sum(axis=0), (y * y).sum(axis=0)))


def test_each_neuron_is_matched_with_the_neuron_of_largest_r_and_its_chance_level_in_rotated_states(three):
    """Against r computed from the files' values directly: the match is the other model's neuron of largest |r|, r
    is its correlation with the sign, and r_rotated the mean over the other model's rotations of the best |r| among
    its moving neurons' states turned by each. A neuron that hardly varies (d0.5_r0's switched-off unit, d0.8_r0's
    whole layer 2 h) has no match, is nobody's, and is left out of the rotated states."""
    _, matches = similarity_tables(list(three.values()))
    models = ["d0.2_r0", "d0.5_r0", "d0.8_r0"]
    assert len(matches) == 3 * 2 * LAYERS * 2 * HIDDEN
    checked = 0
    for layer in range(1, LAYERS + 1):
        for state in ("h", "c"):
            values = {m: _states(three[m], f"layer{layer}/{state}") for m in models}
            for other in models:
                y = values[other]
                kept = y.std(axis=0) >= 1e-6
                turned = [y[:, kept] @ q for q in rotations(other, layer, state, int(kept.sum()))] if kept.any() else []
                for model in models:
                    if model == other:
                        continue
                    rows = matches[(matches.layer == layer) & (matches.state == state) & (matches.model == model)
                                   & (matches.other_model == other)].sort_values("neuron")
                    assert rows.neuron.tolist() == list(range(HIDDEN))
                    if not kept.any():  # no neuron of the other model varies: no match at all
                        assert rows.r.isna().all() and rows.match.isna().all() and rows.r_rotated.isna().all()
                        continue
                    x = values[model]
                    moves = x.std(axis=0) >= 1e-6
                    r = np.where(kept[None, :], _corr(x, y), 0.0)[moves]
                    assert rows.r.isna().to_numpy().tolist() == (~moves).tolist()
                    live = rows[moves]
                    np.testing.assert_array_equal(live.match.to_numpy(int), np.abs(r).argmax(axis=1))
                    np.testing.assert_allclose(live.r, r[np.arange(len(r)), live.match.to_numpy(int)], atol=1e-9)
                    chance = np.mean([np.abs(_corr(x, t))[moves].max(axis=1) for t in turned], axis=0)
                    np.testing.assert_allclose(live.r_rotated, chance, atol=1e-9)
                    # one to one: the pairing of the moving neurons of largest total |r|, r with the partner, and
                    # the mean |r| of the partner in the pairing with each rotation's turned states
                    rows_i, cols_j = linear_sum_assignment(np.abs(_corr(x, y))[np.ix_(moves, kept)], maximize=True)
                    partner = np.flatnonzero(kept)[cols_j]
                    assert rows.partner.notna().sum() == len(rows_i) == min(moves.sum(), kept.sum())
                    paired = rows.set_index("neuron").loc[np.flatnonzero(moves)[rows_i]]
                    np.testing.assert_array_equal(paired.partner.to_numpy(int), partner)
                    np.testing.assert_allclose(paired.r_partner, _corr(x, y)[np.flatnonzero(moves)[rows_i], partner],
                                               atol=1e-9)
                    scores = [np.abs(_corr(x, t))[moves] for t in turned]
                    each = np.full((len(scores), int(moves.sum())), np.nan)  # NaN: a row left over in a pairing
                    for k, sc in enumerate(scores):
                        i, j = linear_sum_assignment(sc, maximize=True)
                        each[k, i] = sc[i, j]
                    chance = np.nanmean(each, axis=0)
                    np.testing.assert_allclose(paired.r_partner_rotated, chance[rows_i], atol=1e-9)
                    checked += int(moves.sum())
    assert checked > 3 * 2 * LAYERS * 2 * HIDDEN * 0.7
    dead = matches[(matches.layer == 2) & (matches.state == "h")]
    assert dead[dead.model == "d0.8_r0"].r.isna().all() and dead[dead.other_model == "d0.8_r0"].r.isna().all()
    switched_off = dead[(dead.model == "d0.5_r0") & (dead.other_model == "d0.2_r0") & dead.r.isna()].neuron.unique()
    assert len(switched_off) == 1  # the one unit switched off, which no neuron of d0.2_r0 matches either
    assert switched_off[0] not in set(dead[dead.other_model == "d0.5_r0"].match.dropna())
    assert switched_off[0] not in set(dead[dead.other_model == "d0.5_r0"].partner.dropna())  # nor pairs with
    # one pairing of two models, read from either side: the same two neurons, the same r
    keys = ["layer", "state", "model", "other_model", "neuron"]
    paired = matches[matches.partner.notna()]
    back = paired.rename(columns={"model": "other_model", "other_model": "model", "neuron": "partner",
                                  "partner": "neuron"})
    both = paired.merge(back, on=[*keys, "partner"], suffixes=("", "_back"))
    assert len(both) == len(paired) > 0
    np.testing.assert_array_equal(both.r_partner, both.r_partner_back)


def test_one_to_one_pairs_rows_and_columns_with_the_largest_total_of_every_pairing():
    """Against every pairing tried: square, more rows than columns (a row left over) and fewer, with rows and
    columns of NaN (neurons that hardly vary), which take no part."""
    rng = np.random.default_rng(5)
    for shape, nan_rows, nan_cols in (((6, 6), [], []), ((7, 5), [], []), ((5, 7), [], []), ((6, 6), [2], [0, 4])):
        scores = rng.random(shape)
        scores[nan_rows, :] = np.nan
        scores[:, nan_cols] = np.nan
        paired = one_to_one(scores)
        rows = [i for i in range(shape[0]) if i not in nan_rows]
        cols = [j for j in range(shape[1]) if j not in nan_cols]
        best = max(sum(scores[i, j] for i, j in zip(rows_used, perm))
                   for rows_used in itertools.combinations(rows, min(len(rows), len(cols)))
                   for perm in itertools.permutations(cols, len(rows_used)))
        used = paired[paired >= 0]
        assert len(used) == len(set(used)) == min(len(rows), len(cols))
        assert not set(used) & set(nan_cols) and (paired[nan_rows] == -1).all()
        assert sum(scores[i, paired[i]] for i in np.flatnonzero(paired >= 0)) == pytest.approx(best, rel=1e-12)
    assert (one_to_one(np.full((3, 3), np.nan)) == -1).all()


def test_the_rotations_are_uniform_and_a_pair_s_chance_level_does_not_depend_on_the_other_models(three):
    """The rotations are orthogonal and, over many draws, their traces have the mean 0 and variance 1 of Haar-random
    rotations (what a rotation that favoured some directions, e.g. without QR's sign correction, would not give);
    a model's rotations follow its name, so leaving a model out or listing the files in another order changes no
    other pair's numbers."""
    q = rotations("d0.2_r0", 1, "h", HIDDEN)
    assert len(q) == 5 and all(np.allclose(m @ m.T, np.eye(HIDDEN), atol=1e-12) for m in q)
    traces = [np.trace(m) for k in range(200) for m in rotations(f"m{k}", 1, "h", 8)]
    assert abs(np.mean(traces)) < 0.1 and abs(np.var(traces) - 1) < 0.15
    _, three_models = similarity_tables(list(three.values()))
    _, two_models = similarity_tables([three["d0.8_r0"], three["d0.5_r0"]])  # places 0, 1 here; 1, 2 among three
    keys = ["layer", "state", "model", "neuron", "other_model"]
    both = two_models.merge(three_models, on=keys, suffixes=("_two", "_three"))
    assert len(both) == len(two_models) > 0
    for col in ("match", "r", "r_rotated", "partner", "r_partner", "r_partner_rotated"):
        pd.testing.assert_series_equal(both[f"{col}_two"], both[f"{col}_three"], check_names=False)


def test_the_rule_counts_the_rotations_the_library_draws():
    """model_similarity's time counts MATCH_ROTATIONS rotations per pair: the number the library draws."""
    from pathlib import Path

    from lstmscope.similarity import ROTATIONS

    rules = (Path(__file__).resolve().parents[1] / "workflow/rules/neurons.smk").read_text()
    assert f"\nMATCH_ROTATIONS = {ROTATIONS}\n" in rules


def test_a_permuted_and_flipped_copy_matches_neuron_for_neuron_and_a_rotated_copy_does_not(three, tmp_path):
    """A copy of a model whose layer 1 h has its neurons reordered, some negated and all scaled is matched neuron for
    neuron (|r| 1, the sign kept), far above the chance level of rotated states; a rotated copy has the same CKA of 1
    but no neuron of its own matches one of the model's as well."""
    x = _states(three["d0.2_r0"], "layer1/h")
    order = np.random.default_rng(2).permutation(HIDDEN)
    signs = np.where(np.arange(HIDDEN) % 3 == 0, -1.0, 1.0)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((HIDDEN, HIDDEN)))
    permuted, rotated = tmp_path / "permuted.h5", tmp_path / "rotated.h5"
    for path, name, values in ((permuted, "d0.3_r0", 2.0 * x[:, order] * signs), (rotated, "d0.4_r0", x @ q)):
        shutil.copy(three["d0.2_r0"], path)
        with h5py.File(path, "a") as f:
            f["layer1/h"][:] = values
            f.attrs["model"], f.attrs["dropout"] = name, float(name[1:4])
    cka, matches = similarity_tables([three["d0.2_r0"], permuted, rotated])
    m = matches[(matches.layer == 1) & (matches.state == "h") & (matches.model == "d0.2_r0")]
    to_permuted = m[m.other_model == "d0.3_r0"].sort_values("neuron")
    np.testing.assert_array_equal(to_permuted.match.to_numpy(int), np.argsort(order))
    np.testing.assert_allclose(to_permuted.r, signs[np.argsort(order)], atol=1e-6)
    assert to_permuted.r_rotated.mean() < 0.9  # the matches of |r| 1 stand far above the chance level
    np.testing.assert_array_equal(to_permuted.partner.to_numpy(int), np.argsort(order))  # paired so too
    np.testing.assert_allclose(to_permuted.r_partner, signs[np.argsort(order)], atol=1e-6)
    assert to_permuted.r_partner_rotated.mean() < 0.9
    to_rotated = m[m.other_model == "d0.4_r0"]
    assert _matrix(cka, 1, "h").loc["d0.2_r0", "d0.4_r0"] == pytest.approx(1.0, abs=1e-6)
    assert to_rotated.r.abs().mean() < 0.9  # a rotated copy: its best matches are at the chance level
    assert to_rotated.r.abs().mean() == pytest.approx(to_rotated.r_rotated.mean(), abs=0.03)
    assert to_rotated.r_partner.abs().mean() == pytest.approx(to_rotated.r_partner_rotated.mean(), abs=0.05)


def test_the_blocks_of_tokens_do_not_change_the_matches(three):
    _, whole = similarity_tables(list(three.values()))
    for rows in (1, 64):
        _, again = similarity_tables(list(three.values()), rows=rows)
        pd.testing.assert_series_equal(again.match, whole.match)
        pd.testing.assert_series_equal(again.partner, whole.partner)
        values = ["r", "r_rotated", "r_partner", "r_partner_rotated"]
        np.testing.assert_allclose(again[values], whole[values], rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def divergences(three, tmp_path_factory):
    folder = tmp_path_factory.mktemp("matches-divergence")
    out = []
    for name, path in three.items():
        (folder / name).mkdir()
        out.append(write_divergence(path, folder / name))
    return out


def test_the_matches_table_and_figure_are_written_and_read_back(three, divergences, tmp_path):
    csv, matches_csv, png, svg = tmp_path / "s.csv", tmp_path / "m.csv", tmp_path / "m.png", tmp_path / "m.svg"
    model_similarity(list(three.values()), csv, matches_csv)
    written = pd.read_csv(matches_csv, dtype={"dropout": str, "other_dropout": str})
    assert list(written.columns) == ["text", "tokens", "layer", "state", "model", "dropout", "neuron", "other_model",
                                     "other_dropout", "match", "r", "r_rotated", "partner", "r_partner",
                                     "r_partner_rotated"]
    assert sorted(set(written.other_dropout)) == ["0.2", "0.5", "0.8"]
    drawn = matches_figure_of(matches_csv, divergences, png, svg, top_k=3, dpi=50)
    pd.testing.assert_frame_equal(drawn, read_matches(matches_csv))
    _, direct = similarity_tables(list(three.values()))
    np.testing.assert_allclose(drawn.r, direct.r, atol=1e-6)  # six digits written
    image = mpimg.imread(png)
    assert image.shape[0] > 200 and image[..., :3].std() > 0.05
    # per neuron: the mean and the largest of its best |r| over the other models, the mean of its chance level
    neurons = per_neuron(drawn).set_index(["layer", "state", "model", "neuron"])
    one = drawn[(drawn.layer == 1) & (drawn.state == "c") & (drawn.model == "d0.2_r0") & (drawn.neuron == 4)]
    assert neurons.loc[(1, "c", "d0.2_r0", 4), "shared"] == pytest.approx(one.r.abs().mean())
    assert neurons.loc[(1, "c", "d0.2_r0", 4), "max_corr"] == pytest.approx(one.r.abs().max())
    assert neurons.loc[(1, "c", "d0.2_r0", 4), "chance"] == pytest.approx(one.r_rotated.mean())
    # and of its partners' |r| (a neuron with a negative r with one of them), over the other models where it has a
    # partner and a chance level of it
    key = tuple(drawn[drawn.r_partner < 0].iloc[0][["layer", "state", "model", "neuron"]])
    one = drawn[(drawn.layer == key[0]) & (drawn.state == key[1]) & (drawn.model == key[2]) & (drawn.neuron == key[3])]
    assert len(one) == 2 and neurons.loc[key, "paired"] == pytest.approx(one.r_partner.abs().mean())
    assert neurons.loc[key, "paired_above_chance"] == pytest.approx(
        one.r_partner.abs().mean() - one.r_partner_rotated.mean())
    without = drawn.copy()
    without.loc[one.index[0], "r_partner_rotated"] = np.nan
    again = per_neuron(without).set_index(["layer", "state", "model", "neuron"])
    assert again.loc[key, "paired"] == pytest.approx(abs(one.r_partner.iloc[1]))
    assert again.loc[key, "paired_chance"] == pytest.approx(one.r_partner_rotated.iloc[1])


def test_the_matches_figure_lists_the_models_by_dropout_whatever_the_table_s_order(three, tmp_path, monkeypatch):
    from lstmscope.neuron_matches import matches_figure

    replicates = []  # two more seeds of dropout 0.2 (copies of its file, renamed): replicate 10 after replicate 2
    for name in ("d0.2_r10", "d0.2_r2"):
        replicates.append(tmp_path / f"{name}.h5")
        shutil.copy(three["d0.2_r0"], replicates[-1])
        with h5py.File(replicates[-1], "a") as f:
            f.attrs["model"] = name
    csv, matches_csv = tmp_path / "s.csv", tmp_path / "m.csv"
    model_similarity([*three.values(), *replicates], csv, matches_csv)
    shuffled = read_matches(matches_csv).sample(frac=1, random_state=1)
    first_seen = [m for m in dict.fromkeys(shuffled["model"]) if m.startswith("d0.2")]
    assert first_seen != ["d0.2_r0", "d0.2_r2", "d0.2_r10"], first_seen
    ticks = []
    monkeypatch.setattr("lstmscope.figures.save_figure", lambda fig, *a, **k: ticks.extend(
        [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes))
    matches_figure(shuffled, {}, tmp_path / "f.png", tmp_path / "f.svg", "t")
    order = ["d0.2_r0", "d0.2_r2", "d0.2_r10", "d0.5_r0", "d0.8_r0"]
    assert ticks and all(t == order for t in ticks)
    # the green line: each model's mean over its neurons of their partners' |r| above its chance level
    lines = []
    monkeypatch.setattr("lstmscope.figures.save_figure", lambda fig, *a, **k: lines.extend(
        (ax.get_title(), line.get_ydata()) for ax in fig.axes for line in ax.get_lines()
        if line.get_color() == "tab:green"))
    matches_figure(shuffled, {}, tmp_path / "f.png", tmp_path / "f.svg", "t")
    means = per_neuron(shuffled).groupby(["layer", "state", "model"])["paired_above_chance"].mean()
    assert len(lines) == LAYERS * 2
    for title, y in lines:
        layer, state = int(title.split()[1].rstrip(",")), "h" if "hidden" in title else "c"
        np.testing.assert_allclose(y, means.loc[(layer, state)].reindex(order).to_numpy(), equal_nan=True)


def test_a_damaged_matches_table_or_missing_divergence_is_refused_before_a_figure_is_drawn(three, divergences,
                                                                                             tmp_path):
    csv, matches_csv = tmp_path / "s.csv", tmp_path / "m.csv"
    model_similarity(list(three.values()), csv, matches_csv)
    lines = matches_csv.read_text().splitlines()
    header, rows = lines[0].split(","), lines[1:]

    def with_cell(line: int, column: str, value: str, body: list[str] | None = None) -> list[str]:
        body = rows if body is None else body
        cells = body[line - 2].split(",")
        cells[header.index(column)] = value
        return [*body[:line - 2], ",".join(cells), *body[line - 1:]]

    def cell(line: int, column: str) -> str:
        return rows[line - 2].split(",")[header.index(column)]

    def counterpart(line: int) -> int:  # the line of the same pairing seen from the partner's side
        want = {"layer": cell(line, "layer"), "state": cell(line, "state"), "model": cell(line, "other_model"),
                "other_model": cell(line, "model"), "neuron": cell(line, "partner"), "partner": cell(line, "neuron")}
        return next(i + 2 for i in range(len(rows)) if all(cell(i + 2, k) == v for k, v in want.items()))

    live = next(i + 2 for i, row in enumerate(rows) if row.split(",")[header.index("r")])
    dead_row = next(i + 2 for i, row in enumerate(rows) if not row.split(",")[header.index("r")])
    unpaired = dead_row  # no r, no partner
    cells = rows[live - 2].split(",")
    live_model, live_other = cells[header.index("model")], cells[header.index("other_model")]
    same_pair = [i + 2 for i, row in enumerate(rows) if row.split(",")[header.index("partner")]
                 and row.split(",")[header.index("model")] == live_model
                 and row.split(",")[header.index("other_model")] == live_other
                 and row.split(",")[:4] == cells[:4] and i + 2 != live]
    other_partner = rows[same_pair[0] - 2].split(",")[header.index("partner")]
    flipped = str(-float(cells[header.index("r_partner")]))
    best_paired = next(i + 2 for i in range(len(rows)) if cell(i + 2, "partner") and cell(i + 2, "partner") == cell(
        i + 2, "match") and cell(i + 2, "layer") == "1")
    unpaired_both = rows  # a partner taken out on both sides
    for line in (live, counterpart(live)):
        for column in ("partner", "r_partner", "r_partner_rotated"):
            unpaired_both = with_cell(line, column, "", unpaired_both)
    # two neurons' partners swapped on one side only: each partner once, but not what the other side says
    swapped = with_cell(live, "partner", other_partner)
    swapped = [*swapped[:same_pair[0] - 2], ",".join(
        cells[header.index("partner")] if k == header.index("partner") else v
        for k, v in enumerate(rows[same_pair[0] - 2].split(","))), *swapped[same_pair[0] - 1:]]
    cases = [
        (rows[:-1], "layer 2 c holds 11 of the 12 neurons of d0.8_r0 matched in d0.5_r0"),
        ([*rows, rows[0]], f"line {len(rows) + 2}: layer 1 h neuron 0 of d0.2_r0 is matched in d0.5_r0 twice"),
        (with_cell(live, "r", "1.5"), f"column r must hold correlations from -1 to 1; line {live} has 1.5"),
        (with_cell(live, "r_rotated", "-0.1"), "column r_rotated must hold numbers from 0 to 1"),
        (with_cell(live, "match", "12"), "column match must hold a neuron the other model has"),
        (with_cell(live, "match", "2.5"), "column match must hold neurons from 0"),
        (with_cell(live, "match", ""), "column match must hold a neuron where r holds a correlation"),
        (with_cell(live, "r_rotated", ""), "column r_rotated must hold a number where r holds a correlation"),
        ([r for r in rows if r.split(",")[header.index("model")] != "d0.8_r0"],
         "model d0.8_r0 is matched in, but none of its own neurons is matched"),
        (with_cell(live, "other_model", rows[live - 2].split(",")[header.index("model")]),
         "column other_model must hold a model other than the line's model"),
        (with_cell(live, "dropout", "0.9"), "has more than one dropout"),
        (with_cell(live, "text", "valid"), "a neuron matches table is one text's"),
        (with_cell(live, "state", "x"), "column state must hold h or c"),
        (with_cell(live, "r_partner", "-1.2"), f"column r_partner must hold correlations from -1 to 1; line {live}"),
        (with_cell(live, "r_partner_rotated", "1.5"), "column r_partner_rotated must hold numbers from 0 to 1"),
        (with_cell(live, "partner", "12"), "column partner must hold a neuron the other model has"),
        (with_cell(live, "partner", ""), "column r_partner must hold a correlation where partner names a neuron"),
        (with_cell(dead_row, "partner", "3"), "column partner must hold no neuron where r is empty"),
        (with_cell(unpaired, "r_partner_rotated", "0.5"), "column r_partner_rotated must hold no number where "
                                                          "partner is empty"),
        (with_cell(live, "partner", str(other_partner)), "column partner must hold each neuron of the other model once"),
        (swapped, "column partner must hold a neuron whose row in the other model names this one its partner"),
        (with_cell(live, "r_partner", flipped), f"column r_partner must hold the r of the pair's row in the other model; "
                                                f"line {live} has {float(flipped):g}"),
        (with_cell(counterpart(best_paired), "r_partner", "0.5", with_cell(best_paired, "r_partner", "0.5")),
         f"column r_partner must hold r where partner is the best match; line {best_paired} has 0.5"),
        (unpaired_both,
         f"of the 12 neurons of {live_model} that vary have a partner in {live_other}, where a one-to-one pairing"),
        (with_cell(live, "r_partner_rotated", ""), "column r_partner_rotated must hold a number where partner names a "
                                                   f"neuron (only a model with more neurons that vary than the other "
                                                   f"may lack one); line {live} has no value"),
    ]
    damaged = tmp_path / "damaged.csv"
    for body, message in cases:
        damaged.write_text("\n".join([lines[0], *body]) + "\n")
        with pytest.raises(ValueError) as err:
            matches_figure_of(damaged, divergences, tmp_path / "f.png", tmp_path / "f.svg", top_k=3)
        assert message in str(err.value) and "\n" not in str(err.value), (message, str(err.value))
        assert not (tmp_path / "f.png").exists()
    with pytest.raises(ValueError, match="holds model d0.8_r0, but no divergence table of it was given"):
        matches_figure_of(matches_csv, divergences[:2], tmp_path / "f.png", tmp_path / "f.svg", top_k=3)
    one = tmp_path / "one.csv"  # one model's run: nothing to match, a table of the header alone
    model_similarity([three["d0.2_r0"]], tmp_path / "one_cka.csv", one)
    assert read_matches(one).empty and list(read_matches(one).columns) == header
    with pytest.raises(ValueError, match="holds no matches .one model"):
        matches_figure_of(one, divergences, tmp_path / "f.png", tmp_path / "f.svg", top_k=3)
    assert not (tmp_path / "f.png").exists()
