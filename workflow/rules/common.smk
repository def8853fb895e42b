# Helpers shared by every file of rules (config validation, the model list, library inputs);
# no rules here (wildcard constraints live in the Snakefile).
import json
import os
import re
import sys
from pathlib import Path
from snakemake.io import apply_wildcards

SCRIPTS = str(Path(workflow.basedir) / "workflow" / "scripts")
sys.path.insert(0, SCRIPTS)
# Every job imports this checkout's library as well: Snakemake appends the scripts folder to a job's
# sys.path, behind site-packages, where an installed lstmscope (a non-editable install, or another
# checkout's editable one) would win, and a job would run code other than the code its inputs list.
# PYTHONPATH comes before site-packages; local jobs inherit it, and a SLURM job's own Snakemake reads this
# file again. Snakemake clears PYTHONPATH in --sdm conda jobs; their environments hold no lstmscope, so
# the appended scripts folder is what they import. The variable is set here, not required from the user,
# so it needs no envvars directive.
os.environ.update(PYTHONPATH=os.pathsep.join(
    [SCRIPTS, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != SCRIPTS)]))
from lstmscope.config import (ConfigError, check_config_files, check_data_folder, model_specs,  # noqa: E402
                              validate_config, dropout_label, model_name, distance_threshold)
from lstmscope.imports import library_modules  # noqa: E402

SPLITS = ["train", "valid", "test"]  # WikiText-2's files, results/data/wikitext-2/<split>.txt (data.smk)

try:
    _texts_given = check_config_files(workflow.configfiles)  # config.yaml and --configfile's
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
                    command_line=dict(workflow.config_settings.config),  # --config's values, all text
                    texts_given=_texts_given)
    if not all(os.path.isfile(f"results/data/wikitext-2/{split}.txt") for split in SPLITS):
        check_data_folder(config["data"]["url"], [f"{split}.txt" for split in SPLITS])  # the download is to run
except ConfigError as _err:
    raise WorkflowError(f"invalid configuration: {_err}") from None

# Models by dropout, then replicate, and texts by name, whatever the config's order: a table or figure of several
# models or texts lists them in this order, so reordering the config (which reruns nothing) leaves the files as a
# fresh run of it would write them.
MODEL_SPECS = {spec.name: spec for spec in sorted(model_specs(config), key=lambda s: (s.dropout, s.replicate))}
MODELS = list(MODEL_SPECS)
TEXTS = sorted(config["texts"])
# The report's text label of a table of every text: the texts named, so that with one text it is that text's name
# (a label of two values, half the results each, becomes a toggle that hides the results it lacks).
ALL_TEXTS = ", ".join(TEXTS)
# The model and text wildcards match the configured names only: a file of a model or text the config does not
# name is "no rule to produce" it, where an input function's lookup would end in a traceback.
MODEL_WILDCARD = "|".join(re.escape(m) for m in MODELS)
TEXT_WILDCARD = "|".join(re.escape(t) for t in TEXTS)
LAYERS = list(range(1, config["architecture"]["layers"] + 1))
STATES = ["h", "c"]
# Parameters of the configured model as lstmscope.model builds it (embedding, each LSTM layer's weights and two
# biases, decoder), for the memory of the jobs that load a checkpoint; the vocabulary's size before it is built:
# vocabulary.max_size, or WikiText-2's 33 278 words.
_A = config["architecture"]
VOCABULARY_SIZE = config["vocabulary"]["max_size"] or 33278
MODEL_PARAMETERS = (
    VOCABULARY_SIZE * _A["embedding_size"]
    + sum(4 * _A["hidden_size"] * ((_A["embedding_size"] if layer == 1 else _A["hidden_size"]) + _A["hidden_size"] + 2)
          for layer in range(1, _A["layers"] + 1))
    + (_A["hidden_size"] + 1) * VOCABULARY_SIZE
)

# Every rule file appends the final outputs it contributes; rule all collects them.
ALL_TARGETS = []


def library_path(name):
    """A file of the library, relative to the working directory: inputs named by absolute path
    would make a moved or re-cloned checkout rerun everything."""
    return os.path.relpath(Path(workflow.basedir) / "workflow" / "scripts" / "lstmscope" / name)


# Library modules that only write files atomically, log and record provenance: no number a job computes depends on
# them. The training (hours of GPU time per model at the thesis's size) and the jobs before it (whose rerun would
# retrain every model) do not list them: lib(..., computing=True).
RECORD_ONLY = ("atomic", "joblog", "provenance")


def lib(script, computing=False):
    """Source files of the library modules that the rule's script (``workflow/scripts/<script>.py``) imports,
    directly or through other modules, read from the sources (``lstmscope.imports``): listed as inputs so that
    editing one reruns exactly the rules that use it. Every job imports the package (``__init__``, which pins
    the kernels) and writes its outputs through ``atomic``, so those are always among them; ``computing``: but
    for :data:`RECORD_ONLY`, which decide no number."""
    scripts = Path(SCRIPTS)
    modules = library_modules(scripts / f"{script}.py", scripts / "lstmscope")
    return [library_path(f"{m}.py") for m in modules if not (computing and m in RECORD_ONLY)]


def named(**params):
    """A rule's params, plus all of them with their names as one more, ``settings``. Snakemake compares a
    job's params with the last run's as a set of values without names, so ``neurons: 3`` where another
    param of the rule is already 3, or two values swapped, would rerun nothing; ``settings`` changes then.
    Functions of the wildcards are left out of it (Snakemake compares what they return), but for settings worked
    out per job (:func:`tokens_read`), which enter it by their value."""
    plain = {k: v for k, v in params.items() if not callable(v)}
    worked_out = {k: v for k, v in params.items() if getattr(v, "setting", False)}
    if not worked_out:
        return {**params, "settings": json.dumps(plain, sort_keys=True, default=str)}

    def settings(wildcards):  # filled in with the wildcards as Snakemake fills in a text param ("{state}")
        return apply_wildcards(json.dumps({**plain, **{k: v(wildcards) for k, v in worked_out.items()}},
                                          sort_keys=True, default=str), wildcards)

    return {**params, "settings": settings}


def tokens_of(text, limit):
    """How many of text ``text``'s tokens a limit (``embedding.max_tokens``, ``ablation.max_tokens``; None: all) lets
    a job read."""
    total = int(config["texts"][text]["tokens"])
    return total if limit is None else min(total, int(limit))


def tokens_read(limit):
    """A param: how many of the job's text's tokens a limit lets it read (:func:`tokens_of`), which is what the job's
    result depends on. A limit raised past the text's length reruns nothing."""

    def tokens(wildcards):
        return tokens_of(wildcards.text, limit)

    tokens.setting = True  # named() puts its value among the settings
    return tokens


def tsne_params(seed, initialization):
    """embed_tsne's params and its other seeds' (embed_tsne_seed): the same settings but the seed and the start."""
    return named(
        layer=lambda wildcards: int(wildcards.layer),
        state="{state}",
        max_tokens=tokens_read(config["embedding"]["max_tokens"]),
        pca_components=config["embedding"]["pca_components"],
        perplexity=config["embedding"]["perplexity"],
        n_iter=config["embedding"]["n_iter"],
        early_exaggeration_iter=config["embedding"]["early_exaggeration_iter"],
        seed=seed,
        initialization=initialization,
    )


# A state as the figures' titles name it (lstmscope.neuron_figures.STATE_NAME), in a title pattern {state_name}
STATE_NAMES = {"h": "hidden state h", "c": "cell state c"}


def embedded_title(pattern):
    """A figure's or page's title, ``pattern`` formatted with the job's wildcards (and ``{state_name}``: the state's
    name, STATE_NAMES), its text naming how many of its tokens are embedded (``embedding.max_tokens`` may take fewer
    than the analysis text holds)."""

    embedded = tokens_read(config["embedding"]["max_tokens"])

    def title(wildcards):
        total, n = int(config["texts"][wildcards.text]["tokens"]), embedded(wildcards)
        span = f"all {total} tokens" if n == total else f"its first {n} of {total} tokens"
        values = dict(wildcards.items())
        state_name = {"state_name": STATE_NAMES[values["state"]]} if "state" in values else {}
        return pattern.format(**{**values, **state_name, "text": f"{wildcards.text} ({span})"})

    return title


def clustered_title(pattern):
    """embedded_title, saying what was clustered when it is not the map (cluster.space: pca)."""
    title = embedded_title(pattern)
    if config["cluster"]["space"] != "pca":
        return title
    hidden = int(config["architecture"]["hidden_size"])
    embedded = tokens_read(config["embedding"]["max_tokens"])

    def clustered(wildcards):
        # as lstmscope.embedding.project_pca: components, at most the tokens embedded; none at all (the
        # states themselves) where that leaves no fewer dimensions than the states have
        k = min(int(config["embedding"]["pca_components"]), embedded(wildcards))
        space = f"the states' {k}-d PCA" if k < hidden else f"the {hidden}-d states"
        return f"{title(wildcards)}\nclusters of {space}, drawn on the t-SNE map"

    return clustered


def log_path(rule_name, pattern):
    return f"results/logs/{rule_name}/{pattern}.log"


def benchmark_path(rule_name, pattern):
    return f"results/benchmarks/{rule_name}/{pattern}.tsv"


def models_with_dropouts(dropouts):
    wanted = {dropout_label(d) for d in dropouts}
    return [name for name, spec in MODEL_SPECS.items() if dropout_label(spec.dropout) in wanted]


ABLATION = config["ablation"]
ABLATED_MODELS = MODELS if ABLATION["dropouts"] is None else models_with_dropouts(ABLATION["dropouts"])


def explorer_ablation(wildcards):
    """The ablation file of a neuron explorer page's model and text, where there is one and
    neuron_explorer.ablation is on; else nothing."""
    if (config["neuron_explorer"]["ablation"] and wildcards.model in ABLATED_MODELS
            and wildcards.text in ABLATION["texts"]):
        return f"results/ablation/{wildcards.model}/{wildcards.text}.h5"
    return []


def train_params(wildcards):
    """The identity of one model: name, dropout, replicate, derived seed."""
    spec = MODEL_SPECS[wildcards.model]
    return {"name": spec.name, "dropout": spec.dropout, "replicate": spec.replicate, "seed": spec.seed}
