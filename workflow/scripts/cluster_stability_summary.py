"""Rule cluster_stability_summary: the clusters of every embedded model across t-SNE seeds, one table and one figure."""
from lstmscope.stability_figure import stability_figure  # first: lstmscope pins the CPU kernels
from lstmscope.cluster_measures import write_csv
from lstmscope.cluster_stability import read_seed_stability
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables


with job_log(snakemake.log[0], "cluster_stability_summary") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    out = snakemake.output  # noqa: F821
    table = read_seed_stability(snakemake.input.tables)  # noqa: F821
    write_csv(table, out.table)
    stability_figure(table, out.png, out.svg, dpi=snakemake.params.dpi)  # noqa: F821
    log.info("%d clusterings of %d models, seeds %s", len(table), table["model"].nunique(),
             sorted(table["seed"].unique().tolist()))
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
