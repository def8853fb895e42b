"""Do the models share neurons? The table of neuron matches that ``model_similarity`` writes beside its CKA table,
read back with its checks, and its figure.

For each neuron of a model (a layer and state) and each other model, the neuron of the other model whose values over
the text correlate most with it (largest |r|, Pearson's, the "best match" of Li et al., 2016, *Convergent Learning*),
r itself, and ``r_rotated``: the best |r| the neuron finds among the other model's states turned by a random rotation
(the mean of :data:`.similarity.ROTATIONS`; the same layer's states, so the same CKA, but no neuron of them is one of
the model's axes). Where a layer's states span few directions, any direction correlates well with some neuron of
them, so a best |r| means a neuron is shared only as far as it stands above ``r_rotated``. Li et al. also pair the
two models' neurons one to one (each neuron of the other model the partner of one neuron at most, the pairing of
largest total |r|): ``partner``, ``r_partner`` and its chance level ``r_partner_rotated``, the |r| of the neuron's
partner in the pairing with the turned states (the mean over the rotations). Bau et al. (2019,
*Identifying and Controlling Important Neurons in Neural Machine Translation*) rank neurons by the largest of their
best |r| over the other models (MaxCorr); :func:`per_neuron` gives it, and the figure shows where the neurons the
pipeline ranks highest by KL stand above chance.

A module of its own (the figure and the reader), so that a change to the figure does not rerun the Gram matrices.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .order import models_in_order
from .similarity import MATCH_COLUMNS, refuse_two_dropouts


def read_matches(path: str | os.PathLike) -> pd.DataFrame:
    """A neuron matches table of ``model_similarity`` read back; a ValueError names the file and the line, pair or
    neuron that is wrong. The header alone is a table of one model (nothing to match)."""
    from .checked_files import number_columns, read_table, refuse_mixed, refuse_rows, refuse_unnamed

    table = read_table(path, MATCH_COLUMNS, "neuron matches table", ValueError, allow_empty=True)
    if table.empty:
        return table
    number_columns(table, ["tokens", "layer", "neuron", "dropout", "other_dropout"], path, ValueError,
                   whole=["tokens", "layer", "neuron"])
    optional = ["match", "r", "r_rotated", "partner", "r_partner", "r_partner_rotated"]
    number_columns(table, optional, path, ValueError, may_be_empty=optional)
    refuse_unnamed(table, ["text", "state", "model", "other_model"], path, ValueError)
    refuse_mixed(table, ["text", "tokens"], path, ValueError, "a neuron matches table is one text's")
    for col in ("model", "other_model"):
        table[col] = table[col].astype(str)
    refuse_rows(table, ~table["state"].isin(["h", "c"]).to_numpy(), "state", "h or c", path, ValueError)
    refuse_rows(table, (table["layer"] < 1).to_numpy(), "layer", "layers from 1", path, ValueError)
    refuse_rows(table, (table["neuron"] < 0).to_numpy(), "neuron", "neurons from 0", path, ValueError)
    for neuron in ("match", "partner"):
        value = table[neuron]
        refuse_rows(table, (value.notna() & ((value < 0) | (value != value.round()))).to_numpy(), neuron,
                    "neurons from 0", path, ValueError)
    for r in ("r", "r_partner"):
        refuse_rows(table, (table[r].abs() > 1 + 1e-9).to_numpy(), r, "correlations from -1 to 1", path, ValueError)
    for chance in ("r_rotated", "r_partner_rotated"):
        refuse_rows(table, ((table[chance] < 0) | (table[chance] > 1 + 1e-9)).to_numpy(), chance,
                    "numbers from 0 to 1", path, ValueError)
    refuse_rows(table, (table["match"].isna() != table["r"].isna()).to_numpy(), "match",
                "a neuron where r holds a correlation, and none where r is empty", path, ValueError)
    refuse_rows(table, (table["r_rotated"].isna() != table["r"].isna()).to_numpy(), "r_rotated",
                "a number where r holds a correlation, and none where r is empty", path, ValueError)
    # a neuron with no match has no partner; one with a match may have none (more neurons than the other model moves)
    refuse_rows(table, (table["r"].isna() & table["partner"].notna()).to_numpy(), "partner",
                "no neuron where r is empty (a neuron that hardly varies is paired with none)", path, ValueError)
    refuse_rows(table, (table["partner"].isna() != table["r_partner"].isna()).to_numpy(), "r_partner",
                "a correlation where partner names a neuron, and none where it is empty", path, ValueError)
    refuse_rows(table, (table["partner"].isna() & table["r_partner_rotated"].notna()).to_numpy(),
                "r_partner_rotated", "no number where partner is empty", path, ValueError)
    refuse_rows(table, (table["model"] == table["other_model"]).to_numpy(), "other_model",
                "a model other than the line's model", path, ValueError)
    damaged = "the table is damaged; run model_similarity again"
    models = refuse_two_dropouts(table, [("model", "dropout"), ("other_model", "other_dropout")], path, damaged)
    twice = table.duplicated(["layer", "state", "model", "other_model", "neuron"])
    if twice.any():
        i = int(np.argmax(twice.to_numpy()))
        r = table.iloc[i]
        raise ValueError(f"{path}: line {i + 2}: layer {r['layer']} {r['state']} neuron {r['neuron']} of {r['model']} "
                         f"is matched in {r['other_model']} twice: {damaged}")
    unmatched = sorted(set(models) - set(table["model"]))
    if unmatched:
        raise ValueError(f"{path}: model {unmatched[0]} is matched in, but none of its own neurons is matched: "
                         f"{damaged}")
    width = {m: int(table.loc[table["model"] == m, "neuron"].max()) + 1 for m in models}
    for layer in range(1, int(table["layer"].max()) + 1):
        for state in ("h", "c"):
            rows = table[(table["layer"] == layer) & (table["state"] == state)]
            counts = rows.groupby(["model", "other_model"]).size()
            for a in models:
                for b in models:
                    if a != b and counts.get((a, b), 0) != width[a]:
                        raise ValueError(f"{path}: layer {layer} {state} holds {counts.get((a, b), 0)} of the "
                                         f"{width[a]} neurons of {a} matched in {b}: {damaged}")
    for neuron in ("match", "partner"):
        beyond = table[neuron] >= table["other_model"].map(width)
        refuse_rows(table, beyond.to_numpy(), neuron, "a neuron the other model has", path, ValueError)
        table[neuron] = table[neuron].astype("Int64")
    _check_pairing(table, path, damaged)
    return table


def _check_pairing(table: pd.DataFrame, path: str | os.PathLike, damaged: str) -> None:
    """The one-to-one pairing pairs each neuron of the other model once, the same two neurons with the same r from
    either side, as many as the two models have neurons that vary (the fewer), with r where the partner is the best
    match; and its chance level is missing only where the model varies in more neurons than the other."""
    from .checked_files import refuse_rows

    pair = ["layer", "state", "model", "other_model"]
    keys = [*pair, "neuron", "partner"]
    paired = table["partner"].notna().to_numpy()
    refuse_rows(table, paired & table.duplicated([*pair, "partner"]).to_numpy(), "partner",
                "each neuron of the other model once per layer and state (a one-to-one pairing)", path, ValueError)
    back = table.loc[paired, [*keys, "r_partner"]].rename(columns={
        "model": "other_model", "other_model": "model", "neuron": "partner", "partner": "neuron", "r_partner": "back"})
    r_back = table[keys].merge(back, on=keys, how="left")["back"].to_numpy(dtype=float)
    refuse_rows(table, paired & np.isnan(r_back), "partner", "a neuron whose row in the other model names this one "
                "its partner", path, ValueError)
    refuse_rows(table, paired & (r_back != table["r_partner"].to_numpy()), "r_partner",
                "the r of the pair's row in the other model", path, ValueError)
    best = (table["partner"] == table["match"]).to_numpy(dtype=bool, na_value=False)
    refuse_rows(table, best & (table["r_partner"] != table["r"]).to_numpy(), "r_partner",
                "r where partner is the best match", path, ValueError)
    varying = table[table["r"].notna()].groupby(pair).size()
    other_side = varying.rename_axis(["layer", "state", "other_model", "model"]).reorder_levels(pair)
    counts = pd.DataFrame({"varying": varying, "others": other_side.reindex(varying.index).fillna(0).astype(int),
                           "paired": table[paired].groupby(pair).size().reindex(varying.index).fillna(0).astype(int)})
    short = counts[counts["paired"] != counts[["varying", "others"]].min(axis=1)]
    if len(short):
        (layer, state, a, b), c = next(iter(short.iterrows()))
        raise ValueError(f"{path}: layer {layer} {state}: {c['paired']} of the {c['varying']} neurons of {a} that "
                         f"vary have a partner in {b}, where a one-to-one pairing with its {c['others']} pairs "
                         f"{min(c['varying'], c['others'])}: {damaged}")
    more = (counts["varying"] > counts["others"]).reindex(pd.MultiIndex.from_frame(table[pair]))
    refuse_rows(table, paired & table["r_partner_rotated"].isna().to_numpy() & ~more.fillna(False).to_numpy(bool),
                "r_partner_rotated", "a number where partner names a neuron (only a model with more neurons that vary "
                "than the other may lack one)", path, ValueError)


def per_neuron(table: pd.DataFrame) -> pd.DataFrame:
    """Each model's neuron of a layer and state, over the other models: ``shared`` the mean of its best |r|, ``chance``
    the mean of its ``r_rotated``, ``above_chance`` the one less the other, ``max_corr`` the largest best |r| (Bau et
    al.'s MaxCorr); the same of its one-to-one partners, ``paired`` (the mean |r| with them), ``paired_chance`` and
    ``paired_above_chance`` (over the other models where it has a partner and its chance level). A neuron that hardly
    varies has none."""
    known = table["r_partner"].notna() & table["r_partner_rotated"].notna()
    t = table.assign(best=table["r"].abs(), partner_best=table["r_partner"].abs().where(known),
                     partner_chance=table["r_partner_rotated"].where(known))
    out = (t.groupby(["layer", "state", "model", "neuron"], sort=False)
           .agg(shared=("best", "mean"), chance=("r_rotated", "mean"), max_corr=("best", "max"),
                paired=("partner_best", "mean"), paired_chance=("partner_chance", "mean"))
           .reset_index())
    return out.assign(above_chance=out["shared"] - out["chance"],
                      paired_above_chance=out["paired"] - out["paired_chance"])[
        ["layer", "state", "model", "neuron", "shared", "chance", "above_chance", "max_corr", "paired",
         "paired_chance", "paired_above_chance"]]


def matches_figure(table: pd.DataFrame, top: Mapping[tuple[str, int, str], Sequence[int]], png: str | os.PathLike,
                   svg: str | os.PathLike, title: str, dpi: int = 150) -> None:
    """A panel per layer (rows) and state (columns); along x the models by dropout; along y how far a neuron's best
    match in the other models stands above its chance level (``above_chance`` of :func:`per_neuron`: 0, the dashed
    line, is what the other models' states turned at random give): the mean over a model's neurons (a line), the
    middle half of its neurons (a band), and the neurons ``top`` names (the top-ranked by KL of each model, layer and
    state) as red circles, each against its own chance level; and the same of the neurons' one-to-one partners above
    theirs (``paired_above_chance``: the mean, a green dashed line, and the middle half, a green band)."""
    import matplotlib.pyplot as plt

    from .figures import STATE_NAMES, figure_title, save_figure

    models = table.drop_duplicates("model").sort_values(["dropout", "model"], key=models_in_order,
                                                        kind="stable")["model"].tolist()  # by dropout, then replicate
    layers = sorted(table["layer"].unique())
    neurons = per_neuron(table)
    by_neuron = neurons.set_index(["layer", "state", "model", "neuron"])["above_chance"]
    fig, axes = plt.subplots(len(layers), 2, figsize=(max(8.0, 0.55 * len(models) * 2 + 2), 3.4 * len(layers)),
                             squeeze=False, sharey=True)
    x = np.arange(len(models))
    marked = False
    for i, layer in enumerate(layers):
        for k, state in enumerate(("h", "c")):
            ax = axes[i, k]
            here = neurons[(neurons["layer"] == layer) & (neurons["state"] == state)].groupby("model")
            above, paired = here["above_chance"], here["paired_above_chance"]
            ax.axhline(0, color="grey", ls="--", lw=1, label="chance: the other models' states turned at random")
            ax.fill_between(x, above.quantile(0.25).reindex(models), above.quantile(0.75).reindex(models),
                            color="tab:blue", alpha=0.2, lw=0, label="best match: middle half of the neurons")
            ax.plot(x, above.mean().reindex(models), "o-", color="tab:blue", ms=4,
                    label="best match: mean over the neurons")
            ax.fill_between(x, paired.quantile(0.25).reindex(models), paired.quantile(0.75).reindex(models),
                            color="tab:green", alpha=0.12, lw=0, label="one-to-one partner: middle half of the neurons")
            ax.plot(x, paired.mean().reindex(models), "s--", color="tab:green", ms=4,
                    label="one-to-one partner: mean over the neurons (its own chance level)")
            for j, model in enumerate(models):
                keys = [(layer, state, model, v) for v in top.get((model, layer, state), ())]
                values = by_neuron.reindex(keys).dropna().to_numpy()
                if len(values):
                    ax.plot(np.full(len(values), j), values, "o", mfc="none", mec="tab:red", ms=5,
                            label=None if marked else "top by KL (their best match)")
                    marked = True
            ax.set_xticks(x, models, rotation=90, fontsize=7)
            ax.set_title(f"layer {layer}, {STATE_NAMES[state]}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if k == 0:
                ax.set_ylabel("|r| in another model,\nabove its chance level", fontsize=8)
    handles = {}
    for ax in axes.flat:  # each entry once, from whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if len(layers) > 1 else 0.12, 1, 1))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=2, fontsize=8, frameon=False)
    save_figure(fig, png, svg, dpi=dpi)


def matches_figure_of(csv_path: str | os.PathLike, divergence_paths: Sequence[str | os.PathLike],
                      png: str | os.PathLike, svg: str | os.PathLike, top_k: int, dpi: int = 150) -> pd.DataFrame:
    """The figure of a neuron matches table (read back with :func:`read_matches`), the ``top_k`` neurons of each
    model's divergence table (one per model of the table, of its text) marked."""
    from .divergence import ranked, read_divergence

    table = read_matches(csv_path)
    if table.empty:
        raise ValueError(f"{csv_path}: holds no matches (one model: no other model to match its neurons in); "
                         "the figure needs two models or more")
    text = str(table["text"].iloc[0])
    divergence = {}
    for path in divergence_paths:
        d = read_divergence(path)
        model = str(d["model"].iloc[0])
        if str(d["text"].iloc[0]) != text:
            raise ValueError(f"{path} is the divergence table of text {d['text'].iloc[0]}, {csv_path} of text {text}")
        divergence[model] = d
    missing = sorted(set(table["model"]) - set(divergence))
    if missing:
        raise ValueError(f"{csv_path} holds model {missing[0]}, but no divergence table of it was given")
    top = {(model, int(layer), state): ranked(d, int(layer), state, top_k)["neuron"].tolist()
           for model, d in divergence.items()
           for layer, state in table[["layer", "state"]].drop_duplicates().itertuples(index=False)}
    models, tokens = table["model"].nunique(), int(table["tokens"].iloc[0])
    count = f"{tokens:,}".replace(",", " ")
    matches_figure(table, top, png, svg, dpi=dpi,
                   title=f"Do the models share neurons? Each neuron's best match and one-to-one partner in the other "
                         f"models above their chance levels, text {text} ({count} tokens, {models} models; red: the "
                         f"top {top_k} by KL of each)")
    return table
