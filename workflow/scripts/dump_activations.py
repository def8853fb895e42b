"""Rule dump_activations: run one analysis text through one model; write every layer's h and c."""
from lstmscope.activations import TextSpec, dump_activations
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "dump_activations") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    dump_activations(
        checkpoint_path=snakemake.input.checkpoint,  # noqa: F821
        vocabulary_path=snakemake.input.vocabulary,  # noqa: F821
        split_path=snakemake.input.split,  # noqa: F821
        text=TextSpec(**dict(p.text)),
        output_path=snakemake.output[0],  # noqa: F821
        dtype=p.dtype,
        chunk_tokens=int(p.chunk_tokens),
        threads=snakemake.threads,  # noqa: F821
        model_info=dict(p.model),
        device=p.device,
        gpus=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
    )
