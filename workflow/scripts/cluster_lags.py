"""Rule cluster_lags: contiguity by lag (how far along the text a cluster reaches) of one model's text."""
from lstmscope.cluster import keyed_tables
from lstmscope.cluster_measures import BEYOND_Z, lag_measures, lag_reach, write_csv
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "cluster_lags") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    tables = keyed_tables(list(snakemake.input.tables), p.views)  # noqa: F821
    lags = lag_measures(tables, p.model, p.text, p.max_lag, shuffles=p.shuffles, seed=p.seed, space=p.space)
    write_csv(lags, snakemake.output[0])  # noqa: F821
    for (layer, state, linkage), view in lags.groupby(["layer", "state", "linkage"], sort=False):
        ends, reach = view.iloc[[0, -1]], lag_reach(view)
        where = {0: "not even at lag 1", 1: "at lag 1"}.get(reach, f"at every lag from 1 to {reach}")
        log.info("layer %s %s %s: same cluster beyond chance %.3f at lag 1, %.3f at lag %d (each word's labels "
                 "shuffled: %.3f, %.3f); above that baseline by %g of its standard deviations %s",
                 layer, state, linkage, ends["kappa"].iloc[0], ends["kappa"].iloc[1], ends["lag"].iloc[1],
                 ends["word_kappa"].iloc[0], ends["word_kappa"].iloc[1], BEYOND_Z, where)
    record_tables(snakemake)  # noqa: F821  (the CSV's provenance, beside it)
