"""Rule neuron_tracking: what the top-ranked neurons track (context effects, extreme words)."""
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables
from lstmscope.tracking import neuron_tracking

with job_log(snakemake.log[0], "neuron_tracking") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    neuron_tracking(
        activations_path=snakemake.input.activations,  # noqa: F821
        divergence_path=snakemake.input.divergence,  # noqa: F821
        csv_path=snakemake.output[0],  # noqa: F821
        top_k=None if p.track is None else int(p.track),
        top_words=int(p.top_words),
    )
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
