"""Rule neuron_matches_figure: the figure of a neuron matches table, the top neurons by KL of each model marked."""
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.neuron_matches import matches_figure_of

with job_log(snakemake.log[0], "neuron_matches_figure") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    table = matches_figure_of(snakemake.input.table, snakemake.input.divergence, o.png, o.svg,  # noqa: F821
                              top_k=int(p.top_k), dpi=int(p.dpi))
    log.info("%d models", table["model"].nunique())
