"""Rule neuron_ablation: remove the top-KL and random neurons of one model one by one; read the text again."""
from lstmscope.ablation import run_ablation
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "neuron_ablation") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    run_ablation(
        checkpoint_path=snakemake.input.checkpoint,  # noqa: F821
        activations_path=snakemake.input.activations,  # noqa: F821
        divergence_path=snakemake.input.divergence,  # noqa: F821
        h5_path=snakemake.output.h5,  # noqa: F821
        state=p.state,
        method=p.method,
        neurons=int(p.neurons),
        random=int(p.random),
        seed=int(p.seed),
        max_tokens=None if p.max_tokens is None else int(p.max_tokens),
        threads=snakemake.threads,  # noqa: F821
        device=p.device,
        gpus=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
    )
