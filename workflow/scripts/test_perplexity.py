"""Rule test_perplexity: score one trained checkpoint on the test split."""
from lstmscope.evaluation_job import run_test_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "test_perplexity") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    run_test_job(
        model_name=snakemake.wildcards.model,  # noqa: F821
        checkpoint_path=snakemake.input.checkpoint,  # noqa: F821
        vocabulary_path=snakemake.input.vocabulary,  # noqa: F821
        split_path=snakemake.input.split,  # noqa: F821
        test_tokens=p.test_tokens,
        eval_batch_size=int(p.eval_batch_size),
        bptt=int(p.bptt),
        device=p.device,
        gpus=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        wanted_threads=int(p.threads),
        output_path=snakemake.output[0],  # noqa: F821
    )
