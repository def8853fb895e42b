"""Rule cluster_contiguity: contiguity of every embedded model in one table and one figure, and by lag in another
table and figure."""
from lstmscope.cluster_figures import contiguity_figure, contiguity_lag_figure  # first: lstmscope pins the CPU kernels
from lstmscope.cluster_measures import read_lag_tables, read_measures, write_csv
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables


with job_log(snakemake.log[0], "cluster_contiguity") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    out = snakemake.output  # noqa: F821
    measures = read_measures(snakemake.input.measures)  # noqa: F821
    lags = read_lag_tables(snakemake.input.lags)  # noqa: F821  (both read before anything is written)
    write_csv(measures, out.table)
    contiguity_figure(measures, out.png, out.svg, dpi=snakemake.params.dpi)  # noqa: F821
    write_csv(lags, out.lag_table)
    contiguity_lag_figure(lags, out.lag_png, out.lag_svg, dpi=snakemake.params.dpi)  # noqa: F821
    log.info("%d clusterings of %d models", len(measures), measures["model"].nunique())
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
