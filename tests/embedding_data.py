"""Test data for the embedding and cluster stages: real activations of a small real LSTM.

A small ``LSTMLanguageModel`` (briefly trained on WikiText-2's training split) reads
a slice of the real test split; the pipeline's own writer (``lstmscope.activations``)
stores its per-layer hidden and cell states as ``results/activations/{model}/{text}.h5``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from lstmscope.activations import FORMAT as ACTIVATIONS_FORMAT
from lstmscope.activations import write_activations as write_activations_file
from lstmscope.model import LSTMLanguageModel, ModelConfig
from lstmscope.vocabulary import build_vocabulary, read_tokens
from wikitext_data import split_path





def write_activations(path: Path, n_tokens: int = 600, offset: int = 0, hidden: int = 24, layers: int = 2,
                      seed: int = 0, train_steps: int = 60, dtype: str = "float32") -> Path:
    """Run a small LSTM over ``n_tokens`` tokens of the test split and write an activations file."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    train_tokens = read_tokens(split_path("train"))[:20000]
    test_tokens = read_tokens(split_path("test"))[offset:offset + n_tokens]
    vocab = build_vocabulary([train_tokens], max_size=1500)
    model = LSTMLanguageModel(ModelConfig(len(vocab), 16, hidden, layers, 0.0))
    # A few SGD steps (pytorch/examples recipe) so the states carry some language.
    train_ids = torch.from_numpy(vocab.encode(train_tokens))
    bptt, batch = 20, 16
    data = train_ids[: (len(train_ids) // batch) * batch].view(batch, -1).t().contiguous()
    model.train()
    state = model.init_hidden(batch)
    for step in range(train_steps):
        i = (step * bptt) % (data.size(0) - bptt - 1)
        x, y = data[i:i + bptt], data[i + 1:i + 1 + bptt]
        state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = torch.nn.functional.cross_entropy(logits, y.reshape(-1))
        model.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        with torch.no_grad():  # plain SGD (torch.optim's import alone costs seconds)
            for p in model.parameters():
                p.add_(p.grad, alpha=-20.0)
    model.eval()
    ids = vocab.encode(test_tokens)
    words = vocab.decode(ids)  # out-of-vocabulary words read as <unk>, as in the pipeline
    attrs = {"format": ACTIVATIONS_FORMAT, "provenance": json.dumps({"test": "embedding_data"}),
             "model": "d0.0_r0", "dropout": 0.0, "seed": seed, "checkpoint_sha256": "", "text": "test",
             "split": "test", "offset": offset, "n_tokens": len(ids), "layers": layers, "hidden_size": hidden,
             "dtype": dtype}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_activations_file(model, ids, words, path, dtype=dtype, chunk_tokens=128, attrs=attrs, progress=False,
                           split_words=test_tokens)
    return path


_CACHE: dict[int, dict] = {}


def real_cluster_tables(n_tokens: int = 500, n_clusters: int = 8) -> dict[tuple[int, str, str], Path]:
    """Cluster tables of every layer x state x linkage of a real run (activations -> t-SNE -> clusters),
    computed once per test session in a temporary folder. Keys: (layer, state, linkage)."""
    import atexit
    import shutil
    import tempfile

    from lstmscope.cluster import cluster_tokens
    from lstmscope.embedding import TSNESettings, embed_tsne

    key = (n_tokens, n_clusters)
    if key not in _CACHE:
        base = Path(tempfile.mkdtemp(prefix="lstmscope-clusters-"))
        atexit.register(shutil.rmtree, base, True)
        h5 = write_activations(base / "test.h5", n_tokens=n_tokens)
        settings = TSNESettings(pca_components=10, perplexity=15, n_iter=100, early_exaggeration_iter=50, seed=5)
        tables = {}
        for layer in (1, 2):
            for state in ("h", "c"):
                emb = base / f"layer{layer}_{state}.csv"
                embed_tsne(h5, emb, layer, state, None, settings)
                for linkage in ("single", "ward"):
                    out = base / f"layer{layer}_{state}_{linkage}.csv"
                    cluster_tokens(emb, out, linkage, n_clusters=n_clusters)
                    tables[(layer, state, linkage)] = out
        _CACHE[key] = {"dir": base, "activations": h5, "tables": tables}
    return dict(_CACHE[key]["tables"])


def real_activations(n_tokens: int = 500, n_clusters: int = 8) -> Path:
    """The activations file behind :func:`real_cluster_tables` (of the same arguments)."""
    real_cluster_tables(n_tokens, n_clusters)
    return _CACHE[(n_tokens, n_clusters)]["activations"]
