"""Rule cluster_comparison: ward and single linkage of one embedding side by side (Fig. 5.8)."""
from lstmscope.cluster import read_clusters
from lstmscope.cluster_figures import ward_vs_single_figure
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.points import read_same_tokens

with job_log(snakemake.log[0], "cluster_comparison") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    p = snakemake.params  # noqa: F821
    tables = read_same_tokens({"ward": snakemake.input.ward, "single": snakemake.input.single},  # noqa: F821
                              read_clusters)
    ward_vs_single_figure(tables, p.title, snakemake.output.png, snakemake.output.svg, dpi=p.dpi)  # noqa: F821
    log.info("ward %d clusters, single %d clusters", tables["ward"]["cluster"].nunique(),
             tables["single"]["cluster"].nunique())
