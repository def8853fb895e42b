"""Rule cluster_tokens: single or ward clusters of one 2-D embedding."""
from lstmscope.cluster import cluster_tokens
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "cluster_tokens") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    cluster_tokens(snakemake.input.embedding, snakemake.output[0], linkage=p.linkage,  # noqa: F821
                   n_clusters=p.n_clusters, distance_threshold=p.distance_threshold,
                   ward_max_points=snakemake.config["cluster"]["ward_max_points"])  # noqa: F821
