"""Rule model_similarity_figure: the figure of a model_similarity table."""
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.similarity import similarity_figure_of

with job_log(snakemake.log[0], "model_similarity_figure") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o = snakemake.output  # noqa: F821
    table = similarity_figure_of(snakemake.input.table, o.png, o.svg, dpi=int(snakemake.params.dpi))  # noqa: F821
    log.info("%d models", table["model_a"].nunique())
