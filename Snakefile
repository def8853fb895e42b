# lstmscope: open up LSTM language models (Ryšánek 2023, reproduced and extended).
# Run:  snakemake                       (default experiment, config.yaml)
#       snakemake --configfile presets/thesis.yaml   (thesis scale; GPU/SLURM)
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/neurons.smk"
include: "workflow/rules/embedding.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
