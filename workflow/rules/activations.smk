# Stage 3: the activations of every model on every analysis text (HDF5; schema in the README).


# Memory of one job: a block of h and c of every layer and the block's logits, plus the model.
ACTIVATIONS_MEM_MB = 600 + (
    config["activations"]["chunk_tokens"]
    * (4 * config["architecture"]["layers"] * 2 * config["architecture"]["hidden_size"] * 4 + VOCABULARY_SIZE * 4 * 2)
    + 2 * 16 * MODEL_PARAMETERS
) // 2**20


rule dump_activations:
    output:
        "results/activations/{model}/{text}.h5",
    input:
        checkpoint="results/models/{model}/model.pt",
        vocabulary="results/data/vocabulary.json",
        split=lambda wildcards: f"results/data/wikitext-2/{config['texts'][wildcards.text]['split']}.txt",
        code=lib("dump_activations"),
    params:
        **named(
            text=lambda wildcards: {"name": wildcards.text, "offset": 0, **config["texts"][wildcards.text]},
            model=train_params,
            dtype=config["activations"]["dtype"],
            chunk_tokens=config["activations"]["chunk_tokens"],
            device=config["activations"]["device"],
        ),
    threads: 1
    log:
        log_path("dump_activations", "{model}/{text}"),
    benchmark:
        benchmark_path("dump_activations", "{model}/{text}")
    resources:
        mem_mb=lambda wildcards, attempt: ACTIVATIONS_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=60,
        gpu=0 if config["activations"]["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/dump_activations.py"
