"""Rule cluster_tokens: single or ward clusters of one 2-D embedding, or of the PCA-reduced states behind it."""
from lstmscope.cluster import cluster_tokens
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "cluster_tokens") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    inputs = snakemake.input  # noqa: F821
    points = None
    if p.space == "pca":  # imported only then: the map needs none of the projection's libraries
        from lstmscope.state_points import pca_points

        points = pca_points(inputs.activations, inputs.embedding, p.layer, p.state, p.max_tokens, p.pca_components,
                            p.seed)
    cluster_tokens(inputs.embedding, snakemake.output[0], linkage=p.linkage,  # noqa: F821
                   n_clusters=p.n_clusters, distance_threshold=p.distance_threshold,
                   ward_max_points=snakemake.config["cluster"]["ward_max_points"],  # noqa: F821
                   space=p.space, points=points)
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
