"""Rule context_use: one model's loss on words of one text with the context before them cut short or shuffled."""
from lstmscope.context_use import context_use
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "context_use") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    table = context_use(
        checkpoint_path=snakemake.input.checkpoint,  # noqa: F821
        activations_path=snakemake.input.activations,  # noqa: F821
        csv_path=snakemake.output[0],  # noqa: F821
        lengths=[int(k) for k in p.lengths],
        positions=int(p.positions),
        seed=int(p.seed),
        device=p.device,
        gpus=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
    log.info("%d rows", len(table))
    record_tables(snakemake, **table.attrs)  # noqa: F821  (the CSV's provenance beside it; the device computing it)
