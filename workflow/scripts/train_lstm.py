"""Rule train_lstm: train one model, resumably; write checkpoint and metrics."""
from lstmscope.joblog import job_log
from lstmscope.training_job import run_training_job

with job_log(snakemake.log[0], "train_lstm") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    run_training_job(
        model=dict(p.model),
        architecture=dict(p.architecture),
        training={**p.training, "save_every_batches": snakemake.config["training"]["save_every_batches"]},  # noqa: F821
        device=p.device,
        gpus=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        split_paths={s: f for s, f in zip(("train", "valid"), snakemake.input.splits)},  # noqa: F821
        vocabulary_path=snakemake.input.vocabulary,  # noqa: F821
        checkpoint_path=snakemake.output.checkpoint,  # noqa: F821
        metrics_path=snakemake.output.metrics,  # noqa: F821
        resume_path=p.resume,
    )
