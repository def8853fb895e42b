"""Rule mean_abs_vs_dropout: mean |activation| of every layer and state against dropout (Fig. 5.7)."""
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.neuron_figures import mean_abs_vs_dropout
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "mean_abs_vs_dropout") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o = snakemake.output  # noqa: F821
    summary = mean_abs_vs_dropout(snakemake.input.divergence, o.table, o.png, o.svg,  # noqa: F821
                                  dpi=int(snakemake.params.dpi))  # noqa: F821
    log.info("%d models", summary["model"].nunique())
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
