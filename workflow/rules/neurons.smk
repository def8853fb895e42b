# Stage 4: values of a neuron: histograms, divergence from the layer average, what the
# top neurons track, figures (thesis Fig. 5.1-5.7) and text heatmaps (Fig. 4.1, 5.3/5.4).

NEURONS = "results/neurons/{model}/{text}"
NEURON_FIGURES = "results/figures/neurons/{model}/{text}"


HEATMAP_VIEWS = [(layer, state) for layer in LAYERS for state in STATES]  # one heatmap figure each, in this order
HEATMAPS = [f"{NEURON_FIGURES}/heatmap_layer{layer}_{state}" for layer, state in HEATMAP_VIEWS]

# Under a cluster executor these small jobs (a table or figure from tables, or from one column of a file: seconds
# each) run where Snakemake runs, as the download does, instead of each waiting in the queue as a job of its own.
localrules:
    histogram_range_table,
    neuron_tracking_table,
    mean_abs_vs_dropout,
    context_probes_vs_dropout,
    gate_figures,
    gates_vs_dropout,
    model_similarity_figure,
    neuron_matches_figure,
    expectancy_heatmap,


rule neuron_histograms:
    output:
        histograms=f"{NEURONS}/histograms.h5",
        ranges=f"{NEURONS}/histogram_range.csv",
    input:
        activations="results/activations/{model}/{text}.h5",
        code=lib("neuron_histograms"),
    params:
        **named(
            bin_width=config["histogram"]["bin_width"],
            cell_range=config["histogram"]["cell_range"],
            near_zero=config["divergence"]["dead_threshold"],
        ),
    log:
        log_path("neuron_histograms", "{model}/{text}"),
    benchmark:
        benchmark_path("neuron_histograms", "{model}/{text}")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_histograms.py"


rule histogram_range_table:
    output:
        report("results/tables/histogram_range.csv", caption="../report/histogram_range.rst", category="Neurons",
               subcategory="all models", labels={"figure": "values outside the histograms' range (CSV)", "text": ALL_TEXTS}),
    input:
        ranges=expand(f"{NEURONS}/histogram_range.csv", model=MODELS, text=TEXTS),
        code=lib("histogram_range_table"),
    params:
        **named(  # (the per-model tables computed with them; here for the table's record)
            bin_width=config["histogram"]["bin_width"],
            cell_range=config["histogram"]["cell_range"],
            near_zero=config["divergence"]["dead_threshold"],
        ),
    log:
        log_path("histogram_range_table", "histogram_range"),
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/histogram_range_table.py"


rule neuron_divergence:
    output:
        table=f"{NEURONS}/divergence.csv",
        dead=f"{NEURONS}/dead_neurons.csv",
    input:
        histograms=f"{NEURONS}/histograms.h5",
        code=lib("neuron_divergence"),
    params:
        **named(
            epsilon=config["divergence"]["epsilon"],
            dead_threshold=config["divergence"]["dead_threshold"],
            dead_fraction=config["divergence"]["dead_fraction"],
            rank_by=config["divergence"]["rank_by"],
        ),
    log:
        log_path("neuron_divergence", "{model}/{text}"),
    benchmark:
        benchmark_path("neuron_divergence", "{model}/{text}")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_divergence.py"


# Memory of a tracking job: about 1 GB, plus the tracked neurons' values of one layer and state over its text,
# read whole (each neuron's effects and extreme words need all its tokens): 16 bytes per neuron and token
# (measured: 17 MB more for 64 neurons than for 5 at 18 000 tokens). divergence.track: null tracks every neuron.
_TRACKED = (config["architecture"]["hidden_size"] if config["divergence"]["track"] is None
            else min(config["architecture"]["hidden_size"], config["divergence"]["track"]))


rule neuron_tracking:
    output:
        f"{NEURONS}/tracking.csv",
    input:
        activations="results/activations/{model}/{text}.h5",
        divergence=f"{NEURONS}/divergence.csv",
        code=lib("neuron_tracking"),
    params:
        **named(
            track=config["divergence"]["track"],
            top_words=config["divergence"]["top_words"],
        ),
    log:
        log_path("neuron_tracking", "{model}/{text}"),
    benchmark:
        benchmark_path("neuron_tracking", "{model}/{text}")
    threads: 1
    resources:
        # doubled on a retry (SLURM profile)
        mem_mb=lambda wildcards, attempt: (1000 + 16 * _TRACKED * int(config["texts"][wildcards.text]["tokens"])
                                           // 10**6) * attempt,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_tracking.py"


rule neuron_tracking_table:
    output:
        report("results/tables/neuron_tracking.csv", caption="../report/neuron_tracking.rst", category="Neurons",
               subcategory="all models", labels={"figure": "what the top neurons track (CSV)", "text": ALL_TEXTS}),
    input:
        tables=expand(f"{NEURONS}/tracking.csv", model=MODELS, text=TEXTS),
        code=lib("neuron_tracking_table"),
    params:
        per_group=1,
    log:
        log_path("neuron_tracking_table", "neuron_tracking"),
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_tracking_table.py"


rule context_probes:
    output:
        f"{NEURONS}/probes.csv",
    input:
        activations="results/activations/{model}/{text}.h5",
        divergence=f"{NEURONS}/divergence.csv",
        code=lib("context_probes"),
    params:
        **named(
            test_share=config["probe"]["test_share"],
            regularisation=config["probe"]["regularisation"],
            kl_neurons=config["probe"]["kl_neurons"],
            window=config["probe"]["window"],
        ),
    log:
        log_path("context_probes", "{model}/{text}"),
    benchmark:
        benchmark_path("context_probes", "{model}/{text}")
    threads: 1
    resources:
        # one layer and state at a time, as float64, with its standardised copy and the ranks of the training part;
        # doubled on a retry (SLURM profile)
        mem_mb=lambda wildcards, attempt: (1000 + 40 * config["architecture"]["hidden_size"]
                                           * int(config["texts"][wildcards.text]["tokens"]) // 10**6) * attempt,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/context_probes.py"


rule context_probes_vs_dropout:
    output:
        table=report("results/tables/context_probes_{text}.csv", caption="../report/context_probes.rst", category="Neurons",
                     subcategory="all models", labels={"figure": "context probes vs dropout (CSV)", "text": "{text}"}),
        png=report("results/figures/neurons/context_probes_{text}.png", caption="../report/context_probes.rst",
                   category="Neurons", subcategory="all models", labels={"figure": "context probes vs dropout", "text": "{text}"}),
        svg="results/figures/neurons/context_probes_{text}.svg",
    input:
        tables=expand(f"{NEURONS}/probes.csv", model=MODELS, allow_missing=True),
        code=lib("context_probes_vs_dropout"),
    params:
        **named(
            dpi=config["figures"]["dpi"],
            window=config["probe"]["window"],  # the legend's "the last 3 words"
        ),
    log:
        log_path("context_probes_vs_dropout", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/context_probes_vs_dropout.py"


# The LSTM's gates, computed again from the dump's h and the checkpoint's weights (checked against the dump's c and h):
# how often each gate of each unit is shut or wide open, and each cell's forget timescale.
# Memory: the interpreter and torch, the checkpoint twice while it loads (float32), and the four gates of every unit
# for a block of 2048 tokens (lstmscope.gates.BLOCK_TOKENS), counted as eight copies (pre-activations, gates, the c
# and h they give, comparisons: a generous bound). Measured at the thesis's size: 1.6 GB on 2000 tokens, 1.75 GB on
# 5000 and on 10 000 (blocks, and freed blocks handed back: gates.fixed_mmap_threshold), where this asks 2.1 GB.
GATES_MEM_MB = 600 + (2 * 4 * MODEL_PARAMETERS + 8 * 2048 * 4 * config["architecture"]["hidden_size"] * 4) // 2**20


rule gate_statistics:
    output:
        f"{NEURONS}/gates.csv",
    input:
        checkpoint="results/models/{model}/model.pt",
        activations="results/activations/{model}/{text}.h5",
        code=lib("gate_statistics"),
    params:
        **named(
            saturation=config["gates"]["saturation"],
        ),
    log:
        log_path("gate_statistics", "{model}/{text}"),
    benchmark:
        benchmark_path("gate_statistics", "{model}/{text}")
    threads: 1
    resources:
        # doubled on a retry (SLURM profile)
        mem_mb=lambda wildcards, attempt: GATES_MEM_MB * attempt,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/gate_statistics.py"


rule gate_figures:
    output:
        png=report(f"{NEURON_FIGURES}/gate_saturation.png", caption="../report/gate_saturation.rst", category="Neurons",
                   subcategory="{model}", labels={"figure": "gate saturation", "model": "{model}", "text": "{text}"}),
        svg=f"{NEURON_FIGURES}/gate_saturation.svg",
    input:
        table=f"{NEURONS}/gates.csv",
        code=lib("gate_figures"),
    params:
        dpi=config["figures"]["dpi"],  # the thresholds are the table's
    log:
        log_path("gate_figures", "{model}/{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/gate_figures.py"


rule gates_vs_dropout:
    output:
        table=report("results/tables/gates_{text}.csv", caption="../report/gates_vs_dropout.rst", category="Neurons",
                     subcategory="all models", labels={"figure": "gates vs dropout (CSV)", "text": "{text}"}),
        png=report("results/figures/neurons/gates_{text}.png", caption="../report/gates_vs_dropout.rst",
                   category="Neurons", subcategory="all models", labels={"figure": "gates vs dropout", "text": "{text}"}),
        svg="results/figures/neurons/gates_{text}.svg",
    input:
        tables=expand(f"{NEURONS}/gates.csv", model=MODELS, allow_missing=True),
        divergence=expand(f"{NEURONS}/divergence.csv", model=MODELS, allow_missing=True),
        code=lib("gates_vs_dropout"),
    params:
        **named(
            top_k=config["divergence"]["top_k"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("gates_vs_dropout", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/gates_vs_dropout.py"


rule neuron_figures:
    output:
        distributions_png=report(f"{NEURON_FIGURES}/distributions.png", caption="../report/neuron_distributions.rst",
                                 category="Neurons", subcategory="{model}", labels={"figure": "5.1 h vs c", "model": "{model}", "text": "{text}"}),
        distributions_svg=f"{NEURON_FIGURES}/distributions.svg",
        top_bottom_png=report(f"{NEURON_FIGURES}/top_bottom.png", caption="../report/neuron_top_bottom.rst",
                              category="Neurons", subcategory="{model}", labels={"figure": "5.2/5.5 top and bottom KL", "model": "{model}", "text": "{text}"}),
        top_bottom_svg=f"{NEURON_FIGURES}/top_bottom.svg",
        dead_png=report(f"{NEURON_FIGURES}/dead_neuron.png", caption="../report/dead_neuron.rst",
                        category="Neurons", subcategory="{model}", labels={"figure": "5.6 dead neuron", "model": "{model}", "text": "{text}"}),
        dead_svg=f"{NEURON_FIGURES}/dead_neuron.svg",
    input:
        histograms=f"{NEURONS}/histograms.h5",
        divergence=f"{NEURONS}/divergence.csv",
        code=lib("neuron_figures"),
    params:
        **named(
            top_k=config["divergence"]["top_k"],
            dead_threshold=config["divergence"]["dead_threshold"],
            dead_fraction=config["divergence"]["dead_fraction"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("neuron_figures", "{model}/{text}"),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_figures.py"


rule mean_abs_vs_dropout:
    output:
        table=report("results/tables/mean_abs_vs_dropout_{text}.csv", caption="../report/mean_abs_vs_dropout.rst", category="Neurons",
                     subcategory="all models", labels={"figure": "5.7 mean |activation| vs dropout (CSV)", "text": "{text}"}),
        png=report("results/figures/neurons/mean_abs_vs_dropout_{text}.png", caption="../report/mean_abs_vs_dropout.rst",
                   category="Neurons", subcategory="all models", labels={"figure": "5.7 mean |activation| vs dropout", "text": "{text}"}),
        svg="results/figures/neurons/mean_abs_vs_dropout_{text}.svg",
    input:
        divergence=expand(f"{NEURONS}/divergence.csv", model=MODELS, allow_missing=True),
        code=lib("mean_abs_vs_dropout"),
    params:
        dpi=config["figures"]["dpi"],
    log:
        log_path("mean_abs_vs_dropout", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/mean_abs_vs_dropout.py"


# model_similarity holds the Gram matrix of every model's neurons of one layer and state side by side (float64) and a
# block of tokens (64 MB); its time is the Gram matrix's sums: tokens x (models x hidden)^2 / 2 multiply-adds per
# layer and state (BLAS's syrk), counted at 2.5 G per second, a quarter of one core's measured at the thesis's size;
# then the neuron matches: each ordered pair of models' covariances turned by each of the rotations of the chance level
# (lstmscope.similarity.ROTATIONS; a test checks the two agree), hidden^3 multiply-adds per pair, layer, state and
# rotation, counted the same; and the one-to-one pairings, one per ordered pair, layer, state and rotation and one per
# pair, layer and state (scipy's linear_sum_assignment, 0.2 s alone and about 0.4 s in the job at hidden 2000 on one
# core, counted at 0.5 s and as growing with hidden^3).
_HIDDEN = config["architecture"]["hidden_size"]
_SIMILARITY_WIDTH = len(MODELS) * _HIDDEN
SIMILARITY_MEM_MB = int(_SIMILARITY_WIDTH ** 2 * 8 / 2 ** 20 * 1.05) + 1000
SIMILARITY_PRODUCTS_PER_TOKEN = len(LAYERS) * len(STATES) * _SIMILARITY_WIDTH ** 2 / 2
MATCH_ROTATIONS = 5
MATCHES_PRODUCTS = len(LAYERS) * len(STATES) * len(MODELS) * (len(MODELS) - 1) * MATCH_ROTATIONS * _HIDDEN ** 3
PAIRING_SECONDS = len(LAYERS) * len(STATES) * len(MODELS) * (len(MODELS) - 1) * (MATCH_ROTATIONS + 0.5) * 0.5 * (
    _HIDDEN / 2000) ** 3


rule model_similarity:
    output:
        table=report("results/tables/similarity_{text}.csv", caption="../report/model_similarity.rst", category="Neurons",
                     subcategory="all models", labels={"figure": "layers alike (CKA, CSV)", "text": "{text}"}),
        matches="results/neuron_matches/{text}.csv",
    input:
        activations=expand("results/activations/{model}/{text}.h5", model=MODELS, allow_missing=True),
        code=lib("model_similarity"),
    log:
        log_path("model_similarity", "{text}"),
    benchmark:
        benchmark_path("model_similarity", "{text}")
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: SIMILARITY_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=lambda wildcards: 10 + int((SIMILARITY_PRODUCTS_PER_TOKEN * config["texts"][wildcards.text]["tokens"]
                                            + MATCHES_PRODUCTS) / 2.5e9 / 60 + PAIRING_SECONDS / 60),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/model_similarity.py"


rule model_similarity_figure:
    output:
        png=report("results/figures/neurons/similarity_{text}.png", caption="../report/model_similarity.rst",
                   category="Neurons", subcategory="all models", labels={"figure": "layers alike (CKA)", "text": "{text}"}),
        svg="results/figures/neurons/similarity_{text}.svg",
    input:
        table="results/tables/similarity_{text}.csv",
        code=lib("model_similarity_figure"),
    params:
        dpi=config["figures"]["dpi"],
    log:
        log_path("model_similarity_figure", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/model_similarity_figure.py"


rule neuron_matches_figure:
    output:
        png=report("results/figures/neurons/neuron_matches_{text}.png", caption="../report/neuron_matches.rst",
                   category="Neurons", subcategory="all models", labels={"figure": "neurons shared", "text": "{text}"}),
        svg="results/figures/neurons/neuron_matches_{text}.svg",
    input:
        table="results/neuron_matches/{text}.csv",
        divergence=expand(f"{NEURONS}/divergence.csv", model=MODELS, allow_missing=True),
        code=lib("neuron_matches_figure"),
    params:
        **named(
            top_k=config["divergence"]["top_k"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("neuron_matches_figure", "{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_matches_figure.py"


rule text_heatmaps:
    output:
        png=[report(f"{p}.png", caption="../report/neuron_heatmap.rst", category="Neurons", subcategory="{model}",
                    labels={"figure": f"5.3/5.4 heatmap, layer {layer}, top by KL of {state}", "model": "{model}",
                            "text": "{text}"})
             for p, (layer, state) in zip(HEATMAPS, HEATMAP_VIEWS)],
        svg=[f"{p}.svg" for p in HEATMAPS],
    input:
        activations="results/activations/{model}/{text}.h5",
        divergence=f"{NEURONS}/divergence.csv",
        code=lib("text_heatmaps"),
    params:
        **named(
            layers=[layer for layer in LAYERS for _ in STATES],
            states=[state for _ in LAYERS for state in STATES],
            neurons=config["heatmap"]["neurons"],
            passage_tokens=config["heatmap"]["passage_tokens"],
            passage=config["heatmap"]["passage"],
            scale=config["heatmap"]["scale"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("text_heatmaps", "{model}/{text}"),
    resources:
        mem_mb=1000,
        runtime=15,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/text_heatmaps.py"


rule expectancy_heatmap:
    output:
        png=report("results/figures/expectancy/{model}/{text}.png", caption="../report/expectancy_heatmap.rst",
                   category="Expectancy", subcategory="{model}", labels={"figure": "4.1 expectancy", "model": "{model}", "text": "{text}"}),
        svg="results/figures/expectancy/{model}/{text}.svg",
    input:
        activations="results/activations/{model}/{text}.h5",
        code=lib("expectancy_heatmap"),
    params:
        **named(
            tokens=config["heatmap"]["expectancy_tokens"],
            floor=config["heatmap"]["expectancy_floor"],
            dpi=config["figures"]["dpi"],
        ),
    log:
        log_path("expectancy_heatmap", "{model}/{text}"),
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/expectancy_heatmap.py"


NEURON_EXPLORER = config["neuron_explorer"]
# Memory of one page's job: about 1 GB, plus the offered neurons' h and c while the page is written (measured:
# 0.93 GB at the peak for every neuron of the thesis's size, 2 x 2 000 neurons x 18 000 tokens, ~13 bytes per
# neuron and token; 16 here). Offered per layer: the top neurons of h and of c, and the random ones removed.
_HIDDEN = config["architecture"]["hidden_size"]
_OFFERED = (_HIDDEN if NEURON_EXPLORER["neurons"] is None
            else min(_HIDDEN, 2 * NEURON_EXPLORER["neurons"] + config["ablation"]["random"]))
NEURON_EXPLORER_MEM_MB = 1000 + (16 * config["architecture"]["layers"] * _OFFERED
                                 * max([config["texts"][t]["tokens"] for t in NEURON_EXPLORER["texts"]] or [0])) // 10**6


rule neuron_explorer:
    output:
        page="results/explorer/neurons/{model}_{text}.html",
        # the page the one-file report can show (Chrome, Chromium and Edge show no embedded page over 2 MB): the
        # page itself where it fits, else one offering fewer top neurons
        report_page=report("results/explorer/neurons/report/{model}_{text}.html",
                           caption="../report/neuron_explorer.rst", category="Neurons", subcategory="{model}",
                           labels={"figure": "neuron explorer", "model": "{model}", "text": "{text}"}),
    input:
        activations="results/activations/{model}/{text}.h5",
        divergence=f"{NEURONS}/divergence.csv",
        template=library_path("neuron_explorer_template.html"),
        ablation=explorer_ablation,
        code=lib("neuron_explorer"),
    params:
        **named(
            neurons=NEURON_EXPLORER["neurons"],
            passage_tokens=config["heatmap"]["passage_tokens"],
            passage=config["heatmap"]["passage"],
            scale=config["heatmap"]["scale"],
            expectancy_floor=config["heatmap"]["expectancy_floor"],
            title="lstmscope neurons · {model} · {text}",
        ),
    log:
        log_path("neuron_explorer", "{model}_{text}"),
    benchmark:
        benchmark_path("neuron_explorer", "{model}_{text}")
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: NEURON_EXPLORER_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/neuron_explorer.py"


EXPLORER_MODELS = MODELS if NEURON_EXPLORER["dropouts"] is None else models_with_dropouts(NEURON_EXPLORER["dropouts"])
ALL_TARGETS.extend(expand(rules.neuron_explorer.output, model=EXPLORER_MODELS, text=NEURON_EXPLORER["texts"]))
ALL_TARGETS.extend(rules.histogram_range_table.output)
ALL_TARGETS.extend(rules.neuron_tracking_table.output)
ALL_TARGETS.extend(expand(rules.mean_abs_vs_dropout.output, text=TEXTS))
ALL_TARGETS.extend(expand(rules.context_probes_vs_dropout.output, text=TEXTS))
ALL_TARGETS.extend(expand(rules.gates_vs_dropout.output, text=TEXTS))
ALL_TARGETS.extend(expand(rules.model_similarity_figure.output, text=TEXTS))
if len(MODELS) > 1:  # (one model has no other to match its neurons in)
    ALL_TARGETS.extend(expand(rules.neuron_matches_figure.output, text=TEXTS))
for _rule in (rules.neuron_figures, rules.gate_figures, rules.text_heatmaps, rules.expectancy_heatmap):
    ALL_TARGETS.extend(expand(_rule.output, model=MODELS, text=TEXTS))
ALL_TARGETS.extend(expand(f"{NEURONS}/dead_neurons.csv", model=MODELS, text=TEXTS))
