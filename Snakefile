# lstmscope: open up LSTM language models (Ryšánek 2023, reproduced and extended).
# Run:  snakemake                       (default experiment, config.yaml)
#       snakemake --configfile presets/thesis.yaml --resources gpu=1 mem_mb=50000   (thesis scale, GPU workstation;
#                                                       mem_mb: about 80 % of its RAM)
#       snakemake --profile profiles/slurm --cores 8 --configfile presets/thesis.yaml   (thesis scale, SLURM)
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    model=MODEL_WILDCARD,
    split=r"train|valid|test",
    text=TEXT_WILDCARD,
    layer=r"[0-9]+",
    state=r"h|c",
    linkage=r"single|ward",
    seed=r"[0-9]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/neurons.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/context.smk"
include: "workflow/rules/embedding.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,


onstart:
    # Under a cluster executor (--profile profiles/slurm), --cores caps the threads of every job submitted and sizes
    # the group jobs; profiles/default's `cores: all`, which key by key wins over --profile's settings, would make it
    # the login node's core count and quietly train with fewer threads than training.threads asks for.
    if workflow.non_local_exec and workflow.cores < int(config["training"]["threads"]):
        raise WorkflowError(
            f"--cores is {workflow.cores} (unless given: this machine's cores, profiles/default's `cores: all`) but "
            f"training.threads is {config['training']['threads']}: under a cluster executor --cores caps every job's "
            "threads; add --cores 8 (or at least training.threads) to the command")
