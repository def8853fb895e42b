"""Rule cluster_figures: numbered clusters (Figs. 5.9/5.10) and clusters along the text (Fig. 5.12)."""
from lstmscope.cluster import read_clusters
from lstmscope.cluster_figures import numbered_clusters_figure, position_figure
from lstmscope.cluster_measures import cluster_table
from lstmscope.figures import record_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "cluster_figures") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    p = snakemake.params  # noqa: F821
    out = snakemake.output  # noqa: F821
    table = read_clusters(snakemake.input.table)  # noqa: F821
    numbered_clusters_figure(table, p.title, out.numbered_png, out.numbered_svg, dpi=p.dpi)
    # the span lines name each cluster's most frequent word only: cluster.top_words is not this job's param
    position_figure(table, cluster_table(table, top_words=1), p.title, p.spans,
                    out.position_png, out.position_svg, dpi=p.dpi, passage=p.passage)
    log.info("%d tokens, %d clusters", len(table), table["cluster"].nunique())
