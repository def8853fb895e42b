"""Rule gate_statistics: how often each gate of each unit is shut or wide open, and each cell's forget timescale
(one model, text)."""
from lstmscope.gates import gate_statistics
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "gate_statistics") as log:  # noqa: F821
    table = gate_statistics(
        checkpoint_path=snakemake.input.checkpoint,  # noqa: F821
        activations_path=snakemake.input.activations,  # noqa: F821
        csv_path=snakemake.output[0],  # noqa: F821
        saturation=float(snakemake.params.saturation),  # noqa: F821
    )
    log.info("%d units", len(table))
    record_tables(snakemake)  # noqa: F821  (the CSV's provenance, beside it)
