"""Rule cluster_stability: the clusters of one model's text on maps of other t-SNE seeds, against the reference map."""
from lstmscope.cluster import keyed_tables
from lstmscope.cluster_measures import write_csv
from lstmscope.cluster_stability import seed_stability
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "cluster_stability") as log:  # noqa: F821
    p, inputs = snakemake.params, snakemake.input  # noqa: F821
    maps = keyed_tables(list(inputs.maps), p.maps, kinds=(int, str, int), what="maps")  # (layer, state, seed)
    table = seed_stability(keyed_tables(list(inputs.tables), p.views), maps,
                           model=p.model, text=p.text, reference_seed=p.reference_seed, n_clusters=p.n_clusters,
                           distance_threshold=p.distance_threshold, space=p.space, shuffles=p.shuffles,
                           shuffle_seed=p.reference_seed, initialization=p.initialization,
                           reference_initialization=p.reference_initialization,
                           ward_max_points=snakemake.config["cluster"]["ward_max_points"])  # noqa: F821
    write_csv(table, snakemake.output[0])  # noqa: F821
    others = table[~table["reference"]]
    log.info("%d clusterings of the maps of %d other seeds; adjusted Rand index against the reference map %.3f-%.3f",
             len(others), others["seed"].nunique(), others["ari"].min(), others["ari"].max())
    record_tables(snakemake)  # noqa: F821  (the CSV's provenance, beside it)
