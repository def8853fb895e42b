"""Tables of several models list them by dropout, then replicate as a number: with 10 or more replicates
``d0.0_r2`` comes before ``d0.0_r10``, which the names' text order reverses."""
from __future__ import annotations

import pandas as pd
import pytest

from lstmscope.ablation import run_ablation
from lstmscope.ablation_figures import ablation_summary
from lstmscope.ablation_file import read_ablation_table
from lstmscope.ablation_table import write_ablation_table
from lstmscope.config import model_name
from lstmscope.neuron_figures import mean_abs_table
from lstmscope.order import model_name_order
from lstmscope.tracking import neuron_tracking, tracking_summary
from neurons_support import divergence_csv, tiny  # noqa: F401  (fixtures)

# The order the pipeline passes the tables in (by dropout, then replicate); the text order differs.
MODELS = [model_name(0.0, r) for r in (1, 2, 10)]


def test_model_name_order_reads_the_replicate_as_a_number():
    assert sorted(["d0.0_r10", "d0.0_r2", "d0.0_r1"], key=model_name_order) == MODELS
    # a name without a number after _r (d0.0_rx) is a stem of its own, after the numbered replicates of d0.0
    assert sorted(["d0.0_rx", "d0.0_r10", "custom", "d0.0_r3"], key=model_name_order) == [
        "custom", "d0.0_r3", "d0.0_r10", "d0.0_rx"]


def _copies(table: pd.DataFrame, folder, stem: str, order) -> list:
    """The table once per model of ``order``, renamed to it (dropout 0.0), written in that order."""
    paths = []
    for model in order:
        path = folder / f"{stem}-{model}.csv"
        table.assign(model=model, dropout=0.0).to_csv(path, index=False)
        paths.append(path)
    return paths


def _listed(frame: pd.DataFrame, group: list[str]) -> set[tuple[str, ...]]:
    """The order of the models within each group of rows (by ``group``) of a summary."""
    return {tuple(sub["model"]) for _, sub in frame.groupby(group, sort=False)}


@pytest.mark.parametrize("given", [MODELS, MODELS[::-1]], ids=["pipeline order", "reversed"])
def test_summaries_of_several_models_list_them_by_replicate(tiny, divergence_csv, tmp_path, given):  # noqa: F811
    expected = {tuple(MODELS)}
    tracking = neuron_tracking(tiny.activations, divergence_csv, tmp_path / "tracking.csv", top_k=2, top_words=3)
    summary = tracking_summary(_copies(tracking, tmp_path, "tracking", given), tmp_path / "tracking-summary.csv")
    assert _listed(summary, ["text", "layer", "state"]) == expected
    assert list(pd.read_csv(tmp_path / "tracking-summary.csv").model.unique()) == MODELS

    divergence = pd.read_csv(divergence_csv)
    mean_abs = mean_abs_table(_copies(divergence, tmp_path, "divergence", given))
    assert _listed(mean_abs, ["layer", "state"]) == expected

    h5, csv = tmp_path / "ablation.h5", tmp_path / "ablation.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, state="h", neurons=1, random=1, seed=1,
                 max_tokens=40)
    write_ablation_table(h5, divergence_csv, csv, min_count=2, top_words=3)
    ablation = ablation_summary(_copies(read_ablation_table(csv), tmp_path, "ablation", given))
    assert _listed(ablation, ["layer", "group"]) == expected
