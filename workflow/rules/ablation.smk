# Stage 4b: ablation. Each top-KL neuron (and, as the control, random neurons of the same layer) is
# removed from a model, one at a time and all together, and the text is read again: the change in
# perplexity and in every word's log-probability says what the model needs the neuron for.

ABLATION_FIGURES = "results/figures/ablation/{model}/{text}"

# Under a cluster executor these small jobs (a table or figure from tables, or from one column of a file: seconds
# each) run where Snakemake runs, as the download does, instead of each waiting in the queue as a job of its own.
localrules:
    ablation_vs_dropout,


rule neuron_ablation:
    output:
        h5="results/ablation/{model}/{text}.h5",
    input:
        checkpoint="results/models/{model}/model.pt",
        activations="results/activations/{model}/{text}.h5",
        divergence="results/neurons/{model}/{text}/divergence.csv",
        code=lib("neuron_ablation"),
    params:
        **named(
            state=ABLATION["state"],
            method=ABLATION["method"],
            neurons=ABLATION["neurons"],
            random=ABLATION["random"],
            seed=ABLATION["seed"],
            max_tokens=tokens_read(ABLATION["max_tokens"]),
            device=config["activations"]["device"],
        ),
    threads: 1
    log:
        log_path("neuron_ablation", "{model}/{text}"),
    benchmark:
        benchmark_path("neuron_ablation", "{model}/{text}")
    resources:
        mem_mb=lambda wildcards, attempt: ACTIVATIONS_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=120,
        gpu=0 if config["activations"]["device"] == "cpu" else 1,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_ablation.py"


# The table is its own step: the words it lists (ablation.min_count, .top_words) are chosen from the
# log-probabilities in the ablation file, so changing them does not read the text 20 more times.
rule ablation_table:
    output:
        table="results/ablation/{model}/{text}.csv",
    input:
        h5="results/ablation/{model}/{text}.h5",
        divergence="results/neurons/{model}/{text}/divergence.csv",
        code=lib("ablation_table"),
    params:
        **named(
            min_count=ABLATION["min_count"],
            top_words=ABLATION["top_words"],
        ),
    log:
        log_path("ablation_table", "{model}/{text}"),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/ablation_table.py"


rule ablation_figures:
    output:
        effects_png=report(f"{ABLATION_FIGURES}/effects.png", caption="../report/ablation_effects.rst",
                           category="Ablation", subcategory="{model}",
                           labels={"figure": "perplexity without neurons", "model": "{model}", "text": "{text}"}),
        effects_svg=f"{ABLATION_FIGURES}/effects.svg",
        heatmap_png=report(f"{ABLATION_FIGURES}/heatmap.png", caption="../report/ablation_heatmap.rst",
                           category="Ablation", subcategory="{model}",
                           labels={"figure": "words a neuron helps predict", "model": "{model}", "text": "{text}"}),
        heatmap_svg=f"{ABLATION_FIGURES}/heatmap.svg",
    input:
        h5="results/ablation/{model}/{text}.h5",
        table="results/ablation/{model}/{text}.csv",
        code=lib("ablation_figures"),
    params:
        **named(
            passage_tokens=config["heatmap"]["passage_tokens"],
            passage=config["heatmap"]["passage"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("ablation_figures", "{model}/{text}"),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/ablation_figures.py"


rule ablation_vs_dropout:
    output:
        table=report("results/tables/ablation_{text}.csv", caption="../report/ablation_vs_dropout.rst",
                     category="Ablation", subcategory="all models",
                     labels={"figure": "perplexity without neurons vs dropout (CSV)", "text": "{text}"}),
        png=report("results/figures/ablation/vs_dropout_{text}.png", caption="../report/ablation_vs_dropout.rst",
                   category="Ablation", subcategory="all models",
                   labels={"figure": "perplexity without neurons vs dropout", "text": "{text}"}),
        svg="results/figures/ablation/vs_dropout_{text}.svg",
    input:
        tables=expand("results/ablation/{model}/{{text}}.csv", model=ABLATED_MODELS),
        code=lib("ablation_vs_dropout"),
    params:
        **named(
            dpi=config["figures"]["dpi"],
            state=ABLATION["state"],  # the state whose KL ranked the top neurons, in the legend
        ),
    log:
        log_path("ablation_vs_dropout", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/ablation_vs_dropout.py"


ALL_TARGETS.extend(expand(rules.ablation_figures.output, model=ABLATED_MODELS,
                          text=ABLATION["texts"]))
ALL_TARGETS.extend(expand(rules.ablation_vs_dropout.output, text=ABLATION["texts"]))
