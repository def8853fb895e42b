"""Rule neuron_divergence: KL of every neuron against its layer average; dead neurons."""
from lstmscope.divergence import neuron_divergence
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "neuron_divergence") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    neuron_divergence(
        histograms_path=snakemake.input.histograms,  # noqa: F821
        csv_path=snakemake.output.table,  # noqa: F821
        dead_csv_path=snakemake.output.dead,  # noqa: F821
        epsilon=float(p.epsilon),
        dead_threshold=float(p.dead_threshold),
        dead_fraction=float(p.dead_fraction),
        rank_by=str(p.rank_by),
    )
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
