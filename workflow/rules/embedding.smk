# Stage 5: representation of a word. Every token of an analysis text is a point whose coordinates
# are one layer's hidden or cell state: t-SNE to 2-D, single and ward clusters, what the clusters
# hold (Table 5.1, purity, contiguity), figures 5.8-5.12 and the interactive explorer (Fig. 4.2).

EMBEDDING = config["embedding"]
CLUSTER = config["cluster"]
FIGURES = config["figures"]
EMBED_MODELS = MODELS if EMBEDDING["dropouts"] is None else models_with_dropouts(EMBEDDING["dropouts"])  # null: all
EMBED_TEXTS = sorted(EMBEDDING["texts"])  # by name, as TEXTS
EMBED_VIEWS = [(int(layer), state) for layer in EMBEDDING["layers"] for state in EMBEDDING["states"]]
LINKAGES = list(CLUSTER["linkages"])
CLUSTER_PCA = CLUSTER["space"] == "pca"  # cluster the PCA-reduced states instead of the 2-D map
CLUSTER_KEYS = [[layer, state, linkage] for layer, state in EMBED_VIEWS for linkage in LINKAGES]
STABILITY_SEEDS = list(EMBEDDING["stability_seeds"])  # more t-SNE maps of the same states (cluster_stability)
REFERENCE_START = "pca"  # where the map every other output shows starts: the points' PCA (openTSNE's default)
STABILITY_KEYS = [[layer, state, seed] for layer, state in EMBED_VIEWS for seed in STABILITY_SEEDS]
EXPLORER_TEMPLATE = library_path("explorer_template.html")

EMBEDDING_CSV = "results/embedding/{model}/{text}/layer{layer}_{state}.csv"
SEED_EMBEDDING_CSV = "results/embedding/{model}/{text}/seed{seed}/layer{layer}_{state}.csv"  # another t-SNE seed
CLUSTERS_CSV = "results/clusters/{model}/{text}/layer{layer}_{state}_{linkage}.csv"
CLUSTER_FIGURES = "results/figures/clusters/{model}/{text}"
CLUSTER_TABLES = "results/tables/clusters/{model}_{text}"
WORD_REPORT = "Representation of a word"

# Points per embedding, for memory estimates: the most tokens a job embeds.
_MAX_POINTS = max([tokens_of(t, EMBEDDING["max_tokens"]) for t in EMBED_TEXTS] or [2])


# The cluster tables of one model's text: {model} and {text} stay wildcards.
CLUSTER_TABLES_OF_TEXT = expand(
    CLUSTERS_CSV, zip,
    layer=[k[0] for k in CLUSTER_KEYS], state=[k[1] for k in CLUSTER_KEYS], linkage=[k[2] for k in CLUSTER_KEYS],
    allow_missing=True,
)
# ward: scipy's condensed distances (8 bytes x n^2/2) and a working copy; single linkage needs O(n).
WARD_MEM_MB = 1000 + (8 * _MAX_POINTS * _MAX_POINTS) // 2**20
STATES_MEM_MB = (_MAX_POINTS * config["architecture"]["hidden_size"] * 16) // 2**20  # states read, PCA's copies
EMBED_MEM_MB = 1000 + STATES_MEM_MB + _MAX_POINTS // 20

# Under a cluster executor these small jobs (a table or figure from tables, or from one column of a file: seconds
# each) run where Snakemake runs, as the download does, instead of each waiting in the queue as a job of its own.
localrules:
    cluster_contiguity,
    cluster_stability_summary,
    highlight_word,


rule embed_tsne:
    output:
        EMBEDDING_CSV,
    input:
        activations="results/activations/{model}/{text}.h5",
        code=lib("embed_tsne"),
    params:
        **tsne_params(EMBEDDING["seed"], REFERENCE_START),
    # One thread: openTSNE's result depends on its thread count; parallelism comes from running
    # the embeddings side by side.
    threads: 1
    log:
        log_path("embed_tsne", "{model}/{text}/layer{layer}_{state}"),
    benchmark:
        benchmark_path("embed_tsne", "{model}/{text}/layer{layer}_{state}")
    resources:
        mem_mb=lambda wildcards, attempt: EMBED_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=20 + _MAX_POINTS // 300,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/embed_tsne.py"


# The same states mapped with another t-SNE seed (embedding.stability_seeds), from the start that
# embedding.stability_initialization names: only the seed and the start differ.
use rule embed_tsne as embed_tsne_seed with:
    output:
        SEED_EMBEDDING_CSV,
    params:
        **tsne_params(lambda wildcards: int(wildcards.seed), EMBEDDING["stability_initialization"]),
    log:
        log_path("embed_tsne_seed", "{model}/{text}/seed{seed}/layer{layer}_{state}"),
    benchmark:
        benchmark_path("embed_tsne_seed", "{model}/{text}/seed{seed}/layer{layer}_{state}")


rule cluster_tokens:
    output:
        CLUSTERS_CSV,
    input:
        embedding=EMBEDDING_CSV,
        # cluster.space: pca reads the states again and makes the embedding's PCA of them
        **({"activations": "results/activations/{model}/{text}.h5"} if CLUSTER_PCA else {}),
        code=lib("cluster_tokens"),
    params:
        **named(
            linkage="{linkage}",
            n_clusters=CLUSTER["n_clusters"],
            # per linkage where set so: another threshold of ward reclusters only ward's views
            distance_threshold=lambda wildcards: distance_threshold(CLUSTER["distance_threshold"], wildcards.linkage),
            space=CLUSTER["space"],
            layer=lambda wildcards: int(wildcards.layer),
            state="{state}",
            # what the PCA depends on; none of it when the map is clustered (the map's file already does)
            max_tokens=tokens_read(EMBEDDING["max_tokens"]) if CLUSTER_PCA else None,
            pca_components=EMBEDDING["pca_components"] if CLUSTER_PCA else None,
            seed=EMBEDDING["seed"] if CLUSTER_PCA else None,
            # cluster.ward_max_points is no param: a memory guard, which the config check applies before any job
            # runs, cannot change a clustering (the script reads it from the config to guard once more)
        ),
    threads: 1
    log:
        log_path("cluster_tokens", "{model}/{text}/layer{layer}_{state}_{linkage}"),
    benchmark:
        benchmark_path("cluster_tokens", "{model}/{text}/layer{layer}_{state}_{linkage}")
    resources:
        mem_mb=lambda wildcards, attempt: ((WARD_MEM_MB if wildcards.linkage == "ward" else 1000)
                                           + (STATES_MEM_MB if CLUSTER_PCA else 0)) * attempt,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_tokens.py"


rule cluster_measures:
    output:
        clusters=report(f"{CLUSTER_TABLES}_top_words.csv", caption="../report/cluster_top_words.rst",
                        category=WORD_REPORT, subcategory="{model}",
                        labels={"figure": "Table 5.1 (CSV)", "model": "{model}", "text": "{text}"}),
        html=report(f"{CLUSTER_TABLES}_top_words.html", caption="../report/cluster_top_words.rst",
                    category=WORD_REPORT, subcategory="{model}",
                    labels={"figure": "Table 5.1", "model": "{model}", "text": "{text}"}),
        measures=report(f"{CLUSTER_TABLES}_measures.csv", caption="../report/cluster_measures.rst",
                        category=WORD_REPORT, subcategory="{model}",
                        labels={"figure": "contiguity and purity (CSV)", "model": "{model}", "text": "{text}"}),
    input:
        tables=CLUSTER_TABLES_OF_TEXT,
        code=lib("cluster_measures"),
    params:
        **named(
            views=CLUSTER_KEYS,
            model="{model}",
            text="{text}",
            top_words=CLUSTER["top_words"],
            shuffles=CLUSTER["shuffles"],
            seed=EMBEDDING["seed"],
            space=CLUSTER["space"],
        ),
    log:
        log_path("cluster_measures", "{model}/{text}"),
    benchmark:
        benchmark_path("cluster_measures", "{model}/{text}")
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_measures.py"


# a rule of its own, not cluster_measures': cluster.max_lag reruns only these tables and the figure drawn from them
rule cluster_lags:
    output:
        report(f"{CLUSTER_TABLES}_contiguity_lag.csv", caption="../report/cluster_contiguity_lag.rst",
               category=WORD_REPORT, subcategory="{model}",
               labels={"figure": "contiguity by lag (CSV)", "model": "{model}", "text": "{text}"}),
    input:
        tables=CLUSTER_TABLES_OF_TEXT,
        code=lib("cluster_lags"),
    params:
        **named(
            views=CLUSTER_KEYS,
            model="{model}",
            text="{text}",
            max_lag=CLUSTER["max_lag"],
            shuffles=CLUSTER["shuffles"],
            seed=EMBEDDING["seed"],
            space=CLUSTER["space"],
        ),
    log:
        log_path("cluster_lags", "{model}/{text}"),
    benchmark:
        benchmark_path("cluster_lags", "{model}/{text}")
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_lags.py"


rule cluster_stability:
    output:
        report(f"{CLUSTER_TABLES}_seed_stability.csv", caption="../report/cluster_stability.rst",
               category=WORD_REPORT, subcategory="{model}",
               labels={"figure": "clusters across t-SNE maps (CSV)", "model": "{model}", "text": "{text}"}),
    input:
        tables=CLUSTER_TABLES_OF_TEXT,
        maps=expand(SEED_EMBEDDING_CSV, zip, layer=[k[0] for k in STABILITY_KEYS],
                    state=[k[1] for k in STABILITY_KEYS], seed=[k[2] for k in STABILITY_KEYS], allow_missing=True),
        code=lib("cluster_stability"),
    params:
        **named(
            views=CLUSTER_KEYS,
            maps=STABILITY_KEYS,
            model="{model}",
            text="{text}",
            reference_seed=EMBEDDING["seed"],
            # where the reference map and the others started, named in the table
            reference_initialization=REFERENCE_START,
            initialization=EMBEDDING["stability_initialization"],
            n_clusters=CLUSTER["n_clusters"],
            distance_threshold={linkage: distance_threshold(CLUSTER["distance_threshold"], linkage)
                                for linkage in LINKAGES},
            space=CLUSTER["space"],
            shuffles=CLUSTER["shuffles"],
            # cluster.ward_max_points is no param, as for cluster_tokens: a memory guard changes no clustering
        ),
    threads: 1
    log:
        log_path("cluster_stability", "{model}/{text}"),
    benchmark:
        benchmark_path("cluster_stability", "{model}/{text}")
    resources:
        mem_mb=lambda wildcards, attempt: (WARD_MEM_MB if "ward" in LINKAGES else 1000) * attempt,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_stability.py"


# the report's labels of what compares the embedded models: those models and texts (embedding.dropouts, .texts), not all
EMBEDDED_LABELS = {"model": ", ".join(EMBED_MODELS), "text": ", ".join(EMBED_TEXTS)}


rule cluster_contiguity:
    output:
        table=report("results/tables/clusters/contiguity.csv", caption="../report/cluster_contiguity.rst",
                     category=WORD_REPORT, subcategory="all models",
                     labels={"figure": "contiguity vs shuffled (CSV)", **EMBEDDED_LABELS}),
        png=report("results/figures/clusters/contiguity.png", caption="../report/cluster_contiguity.rst",
                   category=WORD_REPORT, subcategory="all models",
                   labels={"figure": "contiguity vs shuffled", **EMBEDDED_LABELS}),
        svg="results/figures/clusters/contiguity.svg",
        lag_table=report("results/tables/clusters/contiguity_lag.csv", caption="../report/cluster_contiguity_lag.rst",
                         category=WORD_REPORT, subcategory="all models",
                         labels={"figure": "contiguity by lag (CSV)", **EMBEDDED_LABELS}),
        lag_png=report("results/figures/clusters/contiguity_lag.png", caption="../report/cluster_contiguity_lag.rst",
                       category=WORD_REPORT, subcategory="all models",
                       labels={"figure": "contiguity by lag", **EMBEDDED_LABELS}),
        lag_svg="results/figures/clusters/contiguity_lag.svg",
    input:
        measures=expand(f"{CLUSTER_TABLES}_measures.csv", model=EMBED_MODELS, text=EMBED_TEXTS),
        lags=expand(f"{CLUSTER_TABLES}_contiguity_lag.csv", model=EMBED_MODELS, text=EMBED_TEXTS),
        code=lib("cluster_contiguity"),
    params:
        dpi=FIGURES["dpi"],
    log:
        log_path("cluster_contiguity", "contiguity"),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_contiguity.py"


rule cluster_stability_summary:
    output:
        table=report("results/tables/clusters/seed_stability.csv", caption="../report/cluster_stability.rst",
                     category=WORD_REPORT, subcategory="all models",
                     labels={"figure": "clusters across t-SNE maps (CSV)", **EMBEDDED_LABELS}),
        png=report("results/figures/clusters/seed_stability.png", caption="../report/cluster_stability.rst",
                   category=WORD_REPORT, subcategory="all models",
                   labels={"figure": "clusters across t-SNE maps", **EMBEDDED_LABELS}),
        svg="results/figures/clusters/seed_stability.svg",
    input:
        tables=expand(f"{CLUSTER_TABLES}_seed_stability.csv", model=EMBED_MODELS, text=EMBED_TEXTS),
        code=lib("cluster_stability_summary"),
    params:
        dpi=FIGURES["dpi"],
    log:
        log_path("cluster_stability_summary", "seed_stability"),
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_stability_summary.py"


rule cluster_figures:
    output:
        numbered_png=report(f"{CLUSTER_FIGURES}/layer{{layer}}_{{state}}_{{linkage}}_numbered.png",
                            caption="../report/cluster_numbered.rst", category=WORD_REPORT, subcategory="{model}",
                            labels={"figure": "5.09/5.10 clusters, layer {layer} {state}, {linkage}",
                                    "model": "{model}", "text": "{text}"}),
        numbered_svg=f"{CLUSTER_FIGURES}/layer{{layer}}_{{state}}_{{linkage}}_numbered.svg",
        position_png=report(f"{CLUSTER_FIGURES}/layer{{layer}}_{{state}}_{{linkage}}_position.png",
                            caption="../report/cluster_position.rst", category=WORD_REPORT, subcategory="{model}",
                            labels={"figure": "5.12 clusters along the text, layer {layer} {state}, {linkage}",
                                    "model": "{model}", "text": "{text}"}),
        position_svg=f"{CLUSTER_FIGURES}/layer{{layer}}_{{state}}_{{linkage}}_position.svg",
    input:
        table=CLUSTERS_CSV,
        code=lib("cluster_figures"),
    params:
        **named(
            title=clustered_title("{model} · {text} · layer {layer}, {state_name} · {linkage} linkage"),
            spans=FIGURES["span_clusters"],
            passage=config["heatmap"]["passage"],  # prose: no quoted span holds a section heading (as the heatmaps)
            dpi=FIGURES["dpi"],
        ),
    log:
        log_path("cluster_figures", "{model}/{text}/layer{layer}_{state}_{linkage}"),
    resources:
        mem_mb=1500,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_figures.py"


rule cluster_comparison:
    output:
        png=report(f"{CLUSTER_FIGURES}/layer{{layer}}_{{state}}_ward_vs_single.png",
                   caption="../report/cluster_comparison.rst", category=WORD_REPORT, subcategory="{model}",
                   labels={"figure": "5.08 ward vs single, layer {layer} {state}", "model": "{model}", "text": "{text}"}),
        svg=f"{CLUSTER_FIGURES}/layer{{layer}}_{{state}}_ward_vs_single.svg",
    input:
        ward=CLUSTERS_CSV.replace("{linkage}", "ward"),
        single=CLUSTERS_CSV.replace("{linkage}", "single"),
        code=lib("cluster_comparison"),
    params:
        **named(
            title=clustered_title("{model} · {text} · layer {layer}, {state_name}"),
            dpi=FIGURES["dpi"],
        ),
    log:
        log_path("cluster_comparison", "{model}/{text}/layer{layer}_{state}"),
    resources:
        mem_mb=1500,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/cluster_comparison.py"


rule highlight_word:
    output:
        png=report(f"{CLUSTER_FIGURES}/highlight.png", caption="../report/highlight_word.rst",
                   category=WORD_REPORT, subcategory="{model}",
                   labels={"figure": "5.11 one word highlighted", "model": "{model}", "text": "{text}"}),
        svg=f"{CLUSTER_FIGURES}/highlight.svg",
    input:
        embeddings=[EMBEDDING_CSV.replace("{layer}", str(layer)).replace("{state}", state)
                    for layer, state in EMBED_VIEWS],
        code=lib("highlight_word"),
    params:
        **named(
            views=[[layer, state] for layer, state in EMBED_VIEWS],
            word=FIGURES["highlight_word"],
            title=embedded_title("{model} · {text}"),
            dpi=FIGURES["dpi"],
        ),
    log:
        log_path("highlight_word", "{model}/{text}"),
    resources:
        mem_mb=1500,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/highlight_word.py"


rule explorer:
    output:
        report("results/explorer/{model}_{text}.html", caption="../report/explorer.rst",
               category=WORD_REPORT, subcategory="{model}",
               labels={"figure": "4.2 cluster explorer", "model": "{model}", "text": "{text}"}),
    input:
        tables=CLUSTER_TABLES_OF_TEXT,
        activations="results/activations/{model}/{text}.h5",  # the expectancy of each word
        template=EXPLORER_TEMPLATE,
        code=lib("explorer"),
    params:
        **named(
            views=CLUSTER_KEYS,
            title=clustered_title("lstmscope explorer · {model} · {text}"),
            context_tokens=FIGURES["explorer_context"],
            expectancy_floor=config["heatmap"]["expectancy_floor"],
        ),
    log:
        log_path("explorer", "{model}_{text}"),
    resources:
        mem_mb=1500,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/explorer.py"


ALL_TARGETS.extend(
    expand(rules.cluster_measures.output, model=EMBED_MODELS, text=EMBED_TEXTS)
    + expand(rules.cluster_lags.output, model=EMBED_MODELS, text=EMBED_TEXTS)
    + expand(rules.highlight_word.output, model=EMBED_MODELS, text=EMBED_TEXTS)
    + expand(rules.explorer.output, model=EMBED_MODELS, text=EMBED_TEXTS)
    + expand(
        [f"{CLUSTER_FIGURES}/layer{layer}_{state}_{linkage}_{kind}.{ext}"
         for layer, state in EMBED_VIEWS for linkage in LINKAGES
         for kind in ("numbered", "position") for ext in ("png", "svg")],
        model=EMBED_MODELS, text=EMBED_TEXTS,
    )
    + (expand([f"{CLUSTER_FIGURES}/layer{layer}_{state}_ward_vs_single.{ext}"
               for layer, state in EMBED_VIEWS for ext in ("png", "svg")],
              model=EMBED_MODELS, text=EMBED_TEXTS)
       if {"ward", "single"} <= set(LINKAGES) else [])
    + (list(rules.cluster_contiguity.output) if EMBED_MODELS and EMBED_TEXTS else [])
    + (list(rules.cluster_stability_summary.output) if EMBED_MODELS and EMBED_TEXTS and STABILITY_SEEDS else [])
)
