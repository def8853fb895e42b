"""The gate tables (:mod:`.gates`) read back and summarised per layer and gate, without importing torch."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from .gate_table import COLUMNS, GATES, SHARES

SUMMARY_COLUMNS = ["model", "text", "dropout", "saturation", "layer", "gate", "units", "mean", "left", "right",
                   "units_left", "units_right", "timescale_median", "timescale_p90", "timescale_max", "timescale_top_kl",
                   "timescale_kl_rho", "timescale_kl_p", "timescale_kl_q"]


def read_gates(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The gate tables of :func:`.gates.gate_statistics` (one per model, all of one text), one under the other; a
    ValueError names the file and the column and line of a missing or wrong value, a repeated or missing unit, a
    second table of a model, or another text or saturation."""
    from .checked_files import read_tables, refuse_mixed, refuse_unnamed, refuse_rows

    frames = []
    for path in paths:
        table = read_tables([path], COLUMNS, COLUMNS[2:], "gate table", ValueError, whole=("layer", "neuron"))
        refuse_unnamed(table, ["text"], path, ValueError)
        refuse_mixed(table, ["text"], path, ValueError, "a gate table is one text's")
        twice = table.duplicated(["layer", "neuron"]).to_numpy()
        if twice.any():
            r = table.iloc[int(np.argmax(twice))]
            raise ValueError(f"{path}: line {int(np.argmax(twice)) + 2} repeats layer {r['layer']} neuron "
                             f"{r['neuron']}")
        # every layer holds the units 0..N-1, N the same in each (a missing unit would shorten a count and leave the
        # join with the divergence table without it)
        width = int(table.groupby("layer")["neuron"].size().max())
        for layer, units in table.groupby("layer", sort=True)["neuron"]:
            if sorted(units) != list(range(width)):
                missing = sorted(set(range(width)) - set(units))
                raise ValueError(f"{path}: layer {layer} holds {len(units)} units, not the units 0-{width - 1} of the "
                                 f"widest layer (missing {', '.join(map(str, missing[:5]))}): the table is damaged")
        for col in SHARES:
            refuse_rows(table, ((table[col] < 0) | (table[col] > 1)).to_numpy(), col, "shares (0 to 1)", path,
                        ValueError)
        refuse_rows(table, (table["forget_timescale"] <= 0).to_numpy(), "forget_timescale", "positive numbers",
                    path, ValueError)
        refuse_rows(table, ~((table["saturation"] > 0) & (table["saturation"] < 0.5)).to_numpy(), "saturation",
                    "numbers between 0 and 0.5", path, ValueError)
        refuse_rows(table, (table["saturation"] != table["saturation"].iloc[0]).to_numpy(), "saturation",
                    f"one saturation (line 2 has {table['saturation'].iloc[0]:g})", path, ValueError)
        for col, what in (("text", "text"), ("saturation", "saturation")):
            if frames and table[col].iloc[0] != frames[0][col].iloc[0]:
                raise ValueError(f"{path} is a gate table of {what} {table[col].iloc[0]}, {paths[0]} of {what} "
                                 f"{frames[0][col].iloc[0]}: give the tables of one {what}")
        if frames and str(table["model"].iloc[0]) in {str(f["model"].iloc[0]) for f in frames}:
            raise ValueError(f"{path} is a second gate table of model {table['model'].iloc[0]}: give one per model")
        frames.append(table)
    if not frames:
        raise ValueError("no gate tables given")
    return pd.concat(frames, ignore_index=True)


def kl_link(gates: pd.DataFrame, divergence: pd.DataFrame, top_k: int) -> tuple[float, float, float]:
    """One model and layer's units (``gates``) against its divergence table's cell-state rows (``divergence``): the
    median forget timescale of the ``top_k`` top-ranked live c neurons (as many as there are, where fewer live; NaN
    where none), and Spearman's rank correlation, over the live c neurons, between the ranking's measure and the
    timescale (> 0: the neurons the ranking puts first keep their cells longer), with its two-sided p-value (scipy's,
    no correction for the many layers and models); both NaN where fewer than 3 are live."""
    from scipy.stats import spearmanr

    from .divergence import ranking_measure

    live = divergence[(divergence["state"] == "c") & divergence["rank"].notna()].sort_values("rank")
    timescale = gates.set_index("neuron")["forget_timescale"]
    top = timescale.loc[live["neuron"].head(top_k).astype(int)].median()
    if len(live) < 3:
        return float(top), float("nan"), float("nan")
    result = spearmanr(live[ranking_measure(divergence)], timescale.loc[live["neuron"].astype(int)])
    return float(top), float(result.statistic), float(result.pvalue)


def summarise(table: pd.DataFrame, divergence: pd.DataFrame | None = None, top_k: int = 5,
              majority: float = 0.5) -> pd.DataFrame:
    """One row per model, layer and gate: ``units``; ``mean``, ``left`` and ``right`` averaged over the units (so
    ``left`` is the share of all unit-token pairs where the gate is shut); ``units_left`` / ``units_right``: how many
    units are shut / wide open at more than ``majority`` of the tokens; for the forget gate, the median, 90th
    percentile and largest of the units' ``forget_timescale``, and with the models' ``divergence`` tables (one under
    the other) :func:`kl_link`'s three numbers (the other gates leave these empty), and the p-value's Benjamini-Hochberg
    q over every model and layer of the table (``timescale_kl_q``)."""
    rows = []
    for (model, layer), view in table.groupby(["model", "layer"], sort=False):
        first = view.iloc[0]
        link = (np.nan, np.nan, np.nan)
        if divergence is not None:
            mine = divergence[(divergence["model"] == model) & (divergence["layer"] == layer)]
            link = kl_link(view, mine, top_k)
        for gate in GATES:
            timescale = view["forget_timescale"].to_numpy(dtype=float) if gate == "forget" else None
            rows.append({
                "model": model, "text": first["text"], "dropout": first["dropout"],
                "saturation": first["saturation"], "layer": int(layer),
                "gate": gate, "units": len(view),
                "mean": view[f"{gate}_mean"].mean(), "left": view[f"{gate}_left"].mean(),
                "right": view[f"{gate}_right"].mean(),
                "units_left": int((view[f"{gate}_left"] > majority).sum()),
                "units_right": int((view[f"{gate}_right"] > majority).sum()),
                "timescale_median": np.median(timescale) if timescale is not None else np.nan,
                "timescale_p90": np.percentile(timescale, 90) if timescale is not None else np.nan,
                "timescale_max": timescale.max() if timescale is not None else np.nan,
                "timescale_top_kl": link[0] if timescale is not None else np.nan,
                "timescale_kl_rho": link[1] if timescale is not None else np.nan,
                "timescale_kl_p": link[2] if timescale is not None else np.nan,
            })
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["timescale_kl_q"] = benjamini_hochberg(summary["timescale_kl_p"])
    return summary


def benjamini_hochberg(p: pd.Series) -> pd.Series:
    """Benjamini-Hochberg's adjusted p-values (q, the false discovery rate at which each test would be a discovery)
    of the p-values given, as one family (scipy's ``false_discovery_control``); NaN where p is."""
    from scipy.stats import false_discovery_control

    q = pd.Series(np.nan, index=p.index)
    tested = p.notna()
    if tested.any():
        q[tested] = false_discovery_control(p[tested].to_numpy(dtype=float), method="bh")
    return q


def read_divergences(paths: Sequence[str | os.PathLike], gates: pd.DataFrame) -> pd.DataFrame:
    """The divergence tables of the models of ``gates`` (one per model, of its text and width), one under the other;
    a ValueError names what does not fit."""
    from .divergence import check_divergence_fits, read_divergence
    from .histogram import HistogramError

    frames = {}
    for path in paths:
        try:
            frame = read_divergence(path)
        except HistogramError as exc:
            raise ValueError(str(exc)) from None
        model = str(frame["model"].iloc[0])
        if model in frames:
            raise ValueError(f"{path} and {frames[model][0]} are both divergence tables of model {model}: give one")
        frames[model] = (path, frame)
    text = str(gates["text"].iloc[0])
    models = set(gates["model"].astype(str))
    missing = sorted(models - set(frames))
    if missing:
        raise ValueError(f"no divergence table of model {missing[0]} given (have: {', '.join(sorted(frames)) or 'none'})")
    for model, (path, _) in frames.items():
        if model not in models:
            raise ValueError(f"{path} is the divergence table of model {model}, which no gate table given is of")
    for model, view in gates.groupby("model"):
        path, frame = frames[model]
        try:
            check_divergence_fits(frame, str(model), text, int(view["neuron"].max()) + 1, "its gate table")
        except HistogramError as exc:
            raise ValueError(str(exc)) from None
        layers, theirs = sorted(set(view["layer"])), sorted(set(frame["layer"]))
        if layers != theirs:
            raise ValueError(f"{path} has layers {', '.join(map(str, theirs))}, the gate table of model {model} "
                             f"layers {', '.join(map(str, layers))}: the tables of another model?")
    return pd.concat([frame for _, frame in frames.values()], ignore_index=True)
