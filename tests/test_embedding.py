"""Stage embed_tsne: reading one layer's states, PCA + openTSNE, the position/word/x/y table."""
from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from embedding_data import write_activations
from lstmscope.activations_file import ActivationsError
from lstmscope.embedding import TSNESettings, embed_states, embed_tsne, project_pca, read_states
from lstmscope.points import embedding_table, read_embedding, write_embedding
from lstmscope.vocabulary import read_tokens
from wikitext_data import split_path

N_TOKENS = 600
FAST = TSNESettings(pca_components=10, perplexity=15, n_iter=100, early_exaggeration_iter=50, seed=7)


@pytest.fixture(scope="module")
def activations(tmp_path_factory):
    return write_activations(tmp_path_factory.mktemp("activations") / "d0.0_r0" / "test.h5", n_tokens=N_TOKENS)


@pytest.fixture(scope="module")
def embedded(activations, tmp_path_factory):
    out = tmp_path_factory.mktemp("embedding") / "layer2_c.csv"
    embed_tsne(activations, out, layer=2, state="c", max_tokens=400, settings=FAST)
    return out


def test_read_states_takes_the_first_tokens_of_one_layer_and_state(activations):
    positions, words, states = read_states(activations, layer=2, state="c", max_tokens=250)
    assert states.shape == (250, 24) and states.dtype == np.float32
    assert positions.tolist() == list(range(250))
    real = read_tokens(split_path("test"))[:250]
    # The words are the text's tokens; words outside the model's vocabulary read <unk>.
    assert all(w == t or w == "<unk>" for w, t in zip(words, real))
    assert sum(w == t for w, t in zip(words, real)) > 150
    with h5py.File(activations) as fh:
        np.testing.assert_array_equal(states, fh["layer2/c"][:250])
        assert not np.array_equal(states, fh["layer2/h"][:250])
    # max_tokens beyond the text: the whole text
    assert read_states(activations, 1, "h", 10**6)[2].shape == (N_TOKENS, 24)


def test_read_states_float16_file_gives_float32(tmp_path):
    path = write_activations(tmp_path / "f16.h5", n_tokens=120, hidden=8, train_steps=0, dtype="float16")
    _, _, states = read_states(path, 1, "h", None)
    assert states.dtype == np.float32 and states.shape == (120, 8)


def test_read_states_errors_name_the_file_and_the_dataset(activations, tmp_path):
    with pytest.raises(ActivationsError, match=r"test\.h5: layer 3 does not exist; the file has layers 1\.\.2"):
        read_states(activations, 3, "h")
    with pytest.raises(ActivationsError, match="state 'x' does not exist"):
        read_states(activations, 1, "x")
    with pytest.raises(ActivationsError, match="missing.h5: activations file not found"):
        read_states(tmp_path / "missing.h5", 1, "h")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ActivationsError, match="junk.h5: not a readable HDF5"):
        read_states(tmp_path / "junk.h5", 1, "h")
    # a file that is not a complete activations file is refused, not read in part
    with h5py.File(activations) as f, h5py.File(tmp_path / "partial.h5", "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        f.copy("layer1", g)
    with pytest.raises(ActivationsError, match=r"partial\.h5: dataset 'tokens/ids' is missing"):
        read_states(tmp_path / "partial.h5", 1, "h")
    # one token embeds nothing; a non-finite state among the rows read is named, one beyond them is not read
    with pytest.raises(ActivationsError, match=r"test\.h5: 1 tokens; at least 2 are needed for an embedding"):
        read_states(activations, 1, "h", max_tokens=1)
    import shutil

    shutil.copyfile(activations, tmp_path / "nan.h5")
    with h5py.File(tmp_path / "nan.h5", "a") as f:
        f["layer2/c"][100, 5] = np.inf
    with pytest.raises(ActivationsError, match=r"nan\.h5: layer2/c holds non-finite values in its first 250 rows"):
        read_states(tmp_path / "nan.h5", 2, "c", max_tokens=250)
    assert np.isfinite(read_states(tmp_path / "nan.h5", 2, "c", max_tokens=100)[2]).all()


def test_embedding_table_has_one_row_per_token(embedded, activations):
    table = read_embedding(embedded)
    assert list(table.columns) == ["position", "word", "x", "y"]
    assert table["position"].tolist() == list(range(400))
    _, words, _ = read_states(activations, 2, "c", 400)
    assert table["word"].tolist() == words
    assert np.isfinite(table[["x", "y"]].to_numpy()).all()
    assert table[["x", "y"]].std().min() > 1.0  # spread out, not collapsed


def test_tsne_keeps_neighbours_of_the_state_space(activations):
    """Tokens whose states are near each other stay near each other in 2-D: far more of each point's
    10 nearest neighbours are kept than a random map would keep (10/400)."""
    _, _, states = read_states(activations, 2, "c", 400)
    xy = embed_states(states, FAST, progress_every=0)
    k = 10
    high = cKDTree(project_pca(states, FAST.pca_components, FAST.seed)).query(
        project_pca(states, FAST.pca_components, FAST.seed), k + 1)[1][:, 1:]
    low = cKDTree(xy).query(xy, k + 1)[1][:, 1:]
    kept = np.mean([len(set(a) & set(b)) / k for a, b in zip(high, low)])
    assert kept > 0.3, kept


def test_same_seed_same_numbers_other_seed_other_numbers(activations):
    _, _, states = read_states(activations, 1, "h", 300)
    a = embed_states(states, FAST, progress_every=0)
    b = embed_states(states, FAST, progress_every=0)
    np.testing.assert_array_equal(a, b)
    other = TSNESettings(**{**FAST.__dict__, "seed": FAST.seed + 1})
    assert not np.allclose(a, embed_states(states, other, progress_every=0))


def test_rerun_of_the_stage_writes_the_same_file(activations, embedded, tmp_path):
    again = tmp_path / "again.csv"
    embed_tsne(activations, again, layer=2, state="c", max_tokens=400, settings=FAST)
    assert again.read_bytes() == embedded.read_bytes()


def test_pca_reduces_to_the_configured_dimensions_and_skips_when_there_is_nothing_to_reduce(activations):
    _, _, states = read_states(activations, 1, "c", 200)
    reduced = project_pca(states, 5, seed=0)
    assert reduced.shape == (200, 5)
    # the first component carries the most variance
    assert reduced.var(axis=0)[0] == pytest.approx(reduced.var(axis=0).max())
    np.testing.assert_array_equal(project_pca(states, 50, seed=0), states.astype(np.float64))


def test_pca_is_the_covariance_eigenvectors_each_signed_by_its_largest_loading(activations):
    """What the PCA computes, derived here with numpy alone: the centred states projected onto the top eigenvectors
    of their covariance, each signed so that its largest loading is positive (to 1e-9; that the bits do not depend
    on scikit-learn's choice of solver or sign is the next test's)."""
    for layer, state in ((1, "h"), (2, "c")):
        _, _, states = read_states(activations, layer, state, 500)
        x = states.astype(np.float64) - states.astype(np.float64).mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
        top = vectors[:, ::-1][:, :6]
        top *= np.sign(top[np.abs(top).argmax(axis=0), np.arange(6)])
        np.testing.assert_allclose(project_pca(states, 6, seed=0), x @ top, atol=1e-9)


def test_pca_is_the_same_computation_whatever_the_shape_and_whatever_sign_scikit_learn_gives(activations, monkeypatch):
    """Bit for bit what scikit-learn's covariance_eigh solver computes, also where its `auto` would take another
    solver (200 tokens of 24 units: the full SVD, equal only to 1e-14, which is enough to draw another map); and a
    scikit-learn that signed a component the other way (its convention before 1.5) gives the same numbers."""
    from sklearn.decomposition import PCA

    import lstmscope.embedding as emb

    _, _, states = read_states(activations, 2, "c", 200)
    x = states.astype(np.float64)
    pca = PCA(n_components=6, svd_solver="covariance_eigh")
    want = pca.fit_transform(x)
    want *= np.sign(pca.components_[np.arange(6), np.abs(pca.components_).argmax(axis=1)])
    got = project_pca(states, 6, seed=0)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, PCA(n_components=6).fit_transform(x))  # what `auto` computes here

    class OtherSigns(PCA):  # component 2 and its coordinates the other way round
        def fit_transform(self, X, y=None):
            out = super().fit_transform(X)
            self.components_[2] *= -1
            out[:, 2] *= -1
            return out

    monkeypatch.setattr(emb, "PCA", OtherSigns)
    np.testing.assert_array_equal(project_pca(states, 6, seed=0), want)


def test_a_state_that_never_changes_is_refused_before_the_map(activations, tmp_path):
    """A layer whose units hold one value each (t-SNE of identical points gives NaN coordinates, which the CSV
    wrote as empty cells and the clustering then blamed on the embedding): one line naming the file and dataset,
    and no file written."""
    import shutil

    shutil.copyfile(activations, tmp_path / "flat.h5")
    with h5py.File(tmp_path / "flat.h5", "a") as f:
        f["layer1/h"][:] = np.linspace(-0.5, 0.5, f["layer1/h"].shape[1], dtype=np.float32)  # each unit constant
    with pytest.raises(ActivationsError, match=r"^.*flat\.h5: layer1/h holds one value per unit over all 300 tokens "
                                               r"embedded \(a layer that does not change\)"):
        embed_tsne(tmp_path / "flat.h5", tmp_path / "e.csv", 1, "h", 300, FAST)
    assert not (tmp_path / "e.csv").exists()
    embed_tsne(tmp_path / "flat.h5", tmp_path / "e.csv", 2, "c", 300, FAST)  # the file's other states: a map
    assert np.isfinite(read_embedding(tmp_path / "e.csv")[["x", "y"]].to_numpy()).all()


def test_the_log_names_the_libraries_and_the_fft_the_map_was_computed_with(activations, tmp_path, caplog,
                                                                           monkeypatch):
    from importlib.metadata import version

    from lstmscope.embedding import fft_backend

    assert fft_backend() in ("FFTW", "numpy")  # found in openTSNE's compiled module
    caplog.set_level("INFO", logger="lstmscope.embedding")
    embed_tsne(activations, tmp_path / "e.csv", 1, "h", 200, FAST)
    want = (f"computed with openTSNE {version('openTSNE')}, scikit-learn {version('scikit-learn')}, numpy "
            f"{np.__version__}, scipy {version('scipy')}, openTSNE's FFT {fft_backend()}")
    assert want in caplog.text
    # where a library has no installed metadata (a source tree on the path), its module's __version__: the same
    import importlib.metadata

    from lstmscope.embedding import software

    def none(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", none)
    assert "computed with " + software() == want


def test_same_seed_same_map_where_openTSNE_finds_neighbours_with_annoy(activations, monkeypatch):
    """From 1 000 points openTSNE finds the neighbours approximately (Annoy, with its own seeded random trees), the
    default run's path (4 000 points); the other test's 300 points take the exact neighbours."""
    import openTSNE.nearest_neighbors as nn

    from embedding_data import write_activations as write

    built = []
    build = nn.Annoy.build
    monkeypatch.setattr(nn.Annoy, "build", lambda self, *a, **k: built.append(self) or build(self, *a, **k))
    path = write(activations.parent / "long.h5", n_tokens=1200, hidden=16, train_steps=0)
    _, _, states = read_states(path, 2, "c", None)
    fast = TSNESettings(pca_components=10, perplexity=30, n_iter=30, early_exaggeration_iter=20, seed=3)
    a, b = (embed_states(states, fast, progress_every=0) for _ in range(2))
    assert len(built) == 2  # the path this test is for: each map's neighbours found by Annoy
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, embed_states(states, TSNESettings(**{**fast.__dict__, "seed": 4}), progress_every=0))


def test_too_high_perplexity_is_refused_with_the_limit(activations):
    _, _, states = read_states(activations, 1, "h", 60)
    with pytest.raises(ValueError, match=r"perplexity 30.* too large for 60 points.*19\.7"):
        embed_states(states, TSNESettings(pca_components=10, perplexity=30, n_iter=50, seed=0))


def test_the_stage_names_the_file_a_setting_does_not_fit(activations, tmp_path):
    with pytest.raises(ValueError, match=r"test\.h5 layer 1 state h: perplexity 30.* too large for 60 points"):
        embed_tsne(activations, tmp_path / "e.csv", 1, "h", 60,
                   TSNESettings(pca_components=10, perplexity=30, n_iter=50, seed=0))
    assert not (tmp_path / "e.csv").exists()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="pca_components=1"):
        TSNESettings(pca_components=1)
    with pytest.raises(ValueError, match="perplexity=0"):
        TSNESettings(perplexity=0)


def test_words_survive_the_csv_whatever_they_are(tmp_path):
    words = ["null", "NaN", "NA", "", '"', ",", "<unk>", "a,b", "@-@", "Ryšánek", "None", "#"]
    xy = np.arange(2 * len(words), dtype=float).reshape(-1, 2) / 3
    path = tmp_path / "t.csv"
    write_embedding(embedding_table(np.arange(len(words)), words, xy), path)
    back = read_embedding(path)
    assert back["word"].tolist() == words
    np.testing.assert_allclose(back[["x", "y"]].to_numpy(), xy, atol=1e-6)


def test_read_embedding_names_a_missing_column(tmp_path):
    pd.DataFrame({"position": [0], "word": ["a"], "x": [0.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) y"):
        read_embedding(tmp_path / "bad.csv")
