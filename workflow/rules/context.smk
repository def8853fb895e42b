# Stage 4c: how much of the text before a word each model uses (Khandelwal et al. 2018). Words of an analysis text
# are predicted again from a context cut to their last k words, and with the words before those shuffled; the losses
# are compared with the dump's (the whole text read as one stream).

CONTEXT_USE = config["context_use"]
CONTEXT_MODELS = MODELS if CONTEXT_USE["dropouts"] is None else models_with_dropouts(CONTEXT_USE["dropouts"])
CONTEXT_TEXTS = sorted(CONTEXT_USE["texts"])  # by name, as TEXTS

# A job's time: on a GPU about a minute at the thesis's size (an hour asked); on the CPU from the words it reads (every
# truncated context and every shuffled window, context_use.positions each) and both LSTM layers' multiply-adds per word
# (4 gates x hidden x (the layer's input + hidden)), at 10 GFLOP/s (one core did 24 at the thesis's size, measured
# 2026-12-05), at least an hour. Doubled on a retry (SLURM profile).
_LENGTHS = sorted(CONTEXT_USE["lengths"])
CONTEXT_WORDS = CONTEXT_USE["positions"] * (sum(_LENGTHS) + _LENGTHS[-1] * (len(_LENGTHS) - 1))
CONTEXT_FLOPS = 2 * CONTEXT_WORDS * sum(
    4 * _A["hidden_size"] * ((_A["embedding_size"] if layer == 1 else _A["hidden_size"]) + _A["hidden_size"])
    for layer in LAYERS)
CONTEXT_RUNTIME = 60 if config["activations"]["device"] != "cpu" else max(60, 10 + -(-CONTEXT_FLOPS // (10e9 * 60)))

# Under a cluster executor this small job (a table and figure from tables: seconds) runs where Snakemake runs.
localrules:
    context_use_vs_dropout,


rule context_use:
    output:
        "results/context_use/{model}/{text}.csv",
    input:
        checkpoint="results/models/{model}/model.pt",
        activations="results/activations/{model}/{text}.h5",
        code=lib("context_use"),
    params:
        **named(
            lengths=CONTEXT_USE["lengths"],
            positions=CONTEXT_USE["positions"],
            seed=CONTEXT_USE["seed"],
            device=config["activations"]["device"],
        ),
    threads: 1
    log:
        log_path("context_use", "{model}/{text}"),
    benchmark:
        benchmark_path("context_use", "{model}/{text}")
    resources:
        mem_mb=lambda wildcards, attempt: ACTIVATIONS_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=lambda wildcards, attempt: int(CONTEXT_RUNTIME) * attempt,
        gpu=0 if config["activations"]["device"] == "cpu" else 1,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/context_use.py"


# The summary is its own step: context_use.tolerance (what counts as enough context) reads no text again.
rule context_use_vs_dropout:
    output:
        table=report("results/tables/context_use_{text}.csv", caption="../report/context_use.rst",
                     category="Context", subcategory="all models",
                     labels={"figure": "context used vs dropout (CSV)", "text": "{text}"}),
        png=report("results/figures/context_use_{text}.png", caption="../report/context_use.rst",
                   category="Context", subcategory="all models",
                   labels={"figure": "context used vs dropout", "text": "{text}"}),
        svg="results/figures/context_use_{text}.svg",
    input:
        tables=expand("results/context_use/{model}/{{text}}.csv", model=CONTEXT_MODELS),
        code=lib("context_use_vs_dropout"),
    params:
        **named(
            tolerance=CONTEXT_USE["tolerance"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("context_use_vs_dropout", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/context_use_vs_dropout.py"


ALL_TARGETS.extend(expand(rules.context_use_vs_dropout.output, text=CONTEXT_TEXTS))
