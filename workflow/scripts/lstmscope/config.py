"""Configuration: validation against the JSON schema, defaults, and the model list.

Errors are one line that names the key, the value and what is allowed.
"""
from __future__ import annotations

import copy
import decimal
import difflib
import hashlib
import json
import math
import os
import unicodedata
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Sequence

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and what is allowed."""


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFilling = _extend_with_default(jsonschema.Draft202012Validator)


def _key(path) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


_PATTERN_MEANINGS = {
    "\\S": "is blank",
    "^[0-9a-f]{64}$": "is not a SHA-256 checksum (64 hexadecimal digits, in lower case)",
    "^[A-Za-z][A-Za-z0-9-]{0,63}$": "is not a text's name: a letter, then letters, digits or '-', 64 characters at "
                                    "most (a part of file names)",
}


def _shown(value: Any) -> str:
    """A config value as it is written in YAML where Python spells it otherwise (null, true, false), else its repr."""
    if value is None:
        return "null"
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    v = error.validator
    s = error.validator_value
    if v == "oneOf" and error.context:  # the alternative of the value's own type says what is wrong with it
        # (an alternative refusing the value's type is not its own; one refusing the type of a value inside it is)
        own = [e for e in error.context if e.validator != "type" or e.relative_path]
        if own:
            return _describe(own[0])
        types = [t for e in error.context for t in ([e.validator_value] if isinstance(e.validator_value, str)
                                                     else e.validator_value)]
        names = [{"object": "a mapping", "null": "null"}.get(t, t) for t in dict.fromkeys(types)]
        return f"config key {key}: {_shown(error.instance)} is not {', '.join(names[:-1])} or {names[-1]}"
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"in {key}" if error.absolute_path else "at the top level"
        near = difflib.get_close_matches(str(extra[0]), allowed, n=1)
        guess = f"did you mean {near[0]!r}? " if near else ""
        homes = [] if near or error.absolute_path else [  # a section's key at the top level: --config epochs=3
            name for name, sub in error.schema.get("properties", {}).items()
            if isinstance(sub, dict) and extra[0] in (sub.get("properties") or {})]
        if homes:
            value = json.dumps(error.instance[extra[0]], default=str)
            guess = (f"did you mean {' or '.join(f'{h}.{extra[0]}' for h in homes)}? (in YAML under {homes[0]}:, on "
                     f"the command line --config '{homes[0]}={{{extra[0]}: {value}}}'); ")
        return f"unknown config key {extra[0]!r} {where}; {guess}allowed keys: {', '.join(allowed)}"
    if v == "enum":
        return f"config key {key}: {_shown(error.instance)} is not allowed; choose one of {s}"
    if v == "type":
        types = " or ".join(s) if isinstance(s, list) else s
        hint = ""
        if isinstance(error.instance, str) and ("number" in str(s) or "integer" in str(s)):
            hint = _number_hint(error.instance, integer="number" not in str(s))
        elif isinstance(error.instance, bool) and "string" in str(s):  # highlight_word: no
            hint = "; YAML reads an unquoted yes, no, on or off as true or false: quote the word"
        return f"config key {key}: {_shown(error.instance)} is not of type {types}{hint}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        rel = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return f"config key {key}: {_shown(error.instance)} is out of range; must be {rel} {s}"
    if v == "pattern":
        meaning = _PATTERN_MEANINGS.get(s, f"does not match {s}")
        return f"config key {key}: {_shown(error.instance)} {meaning}"
    if v == "maxItems":  # jsonschema says "is too long" without the limit
        return f"config key {key}: {_shown(error.instance)} has {len(error.instance)} items; at most {s}"
    return f"config key {key}: {error.message}"  # required, minItems, uniqueItems, minProperties: jsonschema's words


def _number_hint(text: str, integer: bool = False) -> str:
    """Where YAML 1.1 reads ``text`` unquoted as text although it is a number (``1e-3``: no dot), how to write it
    so that YAML reads a number (a dot, and a signed exponent: ``1.0e-7``; for a key that takes an ``integer``, its
    digits: ``1e3`` is ``1000``); else nothing."""
    try:
        if not isinstance(yaml.safe_load(f"x: {text}")["x"], str):  # quoted in the file: text by the user's choice
            return ""
        number = float(text)
    except (yaml.YAMLError, ValueError):
        return ""
    if not math.isfinite(number):
        return ""
    if integer:  # a whole number in digits; a fraction is no count, whatever its spelling
        return f" (YAML reads {text} as text: write it {int(number)})" if number.is_integer() else ""
    spelled = repr(number)
    if "e" in spelled:
        mantissa, exponent = spelled.split("e")
        spelled = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent):+d}"
    return f" (YAML reads {text} as text: write it {spelled})"


_JSON_TYPES = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
               or isinstance(v, float) and v.is_integer(),  # as jsonschema: 5.0 is an integer
               "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
               "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
               "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict)}


def _typed(value: str, types: list[str]) -> Any:
    """``value`` read as the same text in a YAML file reads (``5``, ``off``, an empty value as null), or as a
    number where YAML 1.1 keeps it text (``1e-9``), if that gives one of ``types``; else ``value`` unchanged,
    for the schema to refuse with its one-line error."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str) and "number" in types:  # 1e-9 (for an integer, 1e5 stays refused as in a file)
        try:
            parsed = float(parsed)
        except ValueError:
            return value
    if isinstance(parsed, float) and not math.isfinite(parsed):  # nan, inf: refused as text
        return value
    return parsed if any(_JSON_TYPES[t](parsed) for t in types if t in _JSON_TYPES) else value


def coerce_command_line_values(value: Any, schema: dict[str, Any], given: Any) -> Any:
    """Snakemake reads a ``--config`` value with YAML's BaseLoader, so every scalar nested in it is text
    (``--config 'heatmap={neurons: 5}'`` gives ``{'neurons': '5'}``): where ``given`` (that mapping, as merged
    into ``value``) set a value and the schema wants a number, a boolean or null, text that reads (as in a YAML
    file) as one becomes that (in place for mappings). Everything else is left, so a value from a YAML file
    keeps its type: ``neurons: "5"`` there is refused as text."""
    if "oneOf" in schema:  # alternatives (cluster.distance_threshold: null, a number, or one per linkage)
        branches = schema["oneOf"]
        if isinstance(value, dict):
            mappings = [b for b in branches if b.get("type") == "object"]
            return coerce_command_line_values(value, mappings[0], given) if mappings else value
        scalars = [t for b in branches for t in ([b.get("type")] if isinstance(b.get("type"), str)
                                                 else b.get("type", [])) if t not in ("object", "array")]
        return coerce_command_line_values(value, {"type": scalars}, given)
    if isinstance(value, dict) and isinstance(given, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key in given:
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if key in value and sub is not None:
                value[key] = coerce_command_line_values(value[key], sub, given[key])
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_command_line_values(v, schema["items"], v) for v in value]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str) and types and "string" not in types:
        return _typed(value, types)
    return value  # 5.0 where a count is wanted becomes 5 in canonical()


def has_controls(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, DEL, C1: a line break, a tab, an escape) or a line or
    paragraph separator."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _check_plain_values(value: Any, path: tuple = ()) -> None:
    """Every mapping key is text, every number finite (a schema's range check passes NaN), and no text holds a line
    break or another control character (a schema's pattern ending in ``$`` passes one line break at the end, which a
    YAML block ``|`` keeps)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if not isinstance(key, str):
                # (YAML 1.1, which Snakemake reads, takes an unquoted on, off, yes or no for true or false)
                hint = (" (YAML reads an unquoted on, off, yes or no as true or false: quote the name)"
                        if isinstance(key, bool) else " (quote it)" if isinstance(key, (int, float)) else "")
                raise ConfigError(f"config key {_key(path)}: the key {_shown(key)} is not text; keys are names{hint}")
            if has_controls(key):
                raise ConfigError(f"config key {_key(path)}: the key {key!r} holds a line break or another control "
                                  "character")
            _check_plain_values(sub, (*path, key))
    elif isinstance(value, str) and has_controls(value):
        raise ConfigError(f"config key {_key(path)}: {value!r} holds a line break or another control character "
                          "(a YAML block | keeps its last line break: write the value on the key's line)")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _check_plain_values(sub, (*path, i))
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {_key(path)}: {value!r} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
        raise ConfigError(f"config key {_key(path)}: {value} is too large a number")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (the plain loader keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):  # `? [a, b]`: left to Snakemake's own reading
            continue
        if key in seen:
            raise ConfigError(f"{key_node.start_mark.name}, line {line}: key {key!r} given twice (first on line "
                              f"{seen[key]}); YAML would keep only the last one's settings: merge them")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def check_config_files(paths: list[str | os.PathLike]) -> set[str] | None:
    """Each config file read (``config.yaml``, ``--configfile``'s): a key given twice in one mapping is a
    :class:`ConfigError` naming the file, the line and the key. (Snakemake reads them with a plain YAML loader, which
    keeps the last of two ``training:`` sections and drops the first without a word.) Returns the names of the
    texts the files give an entry other than null (:func:`drop_texts_set_to_null`), None where a file could not be
    read here."""
    given: set[str] | None = set()
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = yaml.load(text if not text.startswith("\ufeff") else text[1:], Loader=_UniqueKeyLoader)
        except (OSError, yaml.YAMLError):  # Snakemake has read it, or says itself what is wrong with it
            given = None
            continue
        except ConfigError as exc:  # the mark names "<unicode string>": the file's name instead
            raise ConfigError(str(exc).replace("<unicode string>", str(path), 1)) from None
        texts = data.get("texts") if isinstance(data, dict) else None
        if given is not None and isinstance(texts, dict):
            given |= {str(name) for name, entry in texts.items() if entry is not None}
    return given


def check_data_folder(url: str, files: Sequence[str] = ()) -> None:
    """Where the splits are still to be downloaded, a ``data.url`` that names a folder of this machine (no scheme,
    or ``file://``) must be one, holding the ``files`` (the splits' file names) the download copies: a web address
    typed without its ``https://`` (or with one slash) is read as a folder, and the download would fail on it, or
    on a folder without the splits, after the run began."""
    if "://" in url and urllib.parse.urlparse(url).scheme != "file":
        return  # a web address: the download says what is wrong with it
    folder = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)) if "://" in url else Path(url)
    if folder.is_file():
        raise ConfigError(f"config key data.url: {url!r} is a file; name the folder that holds "
                          f"{', '.join(files) or 'the splits'}")
    if not folder.is_dir():
        raise ConfigError(f"config key data.url: {url!r} is read as a folder of this machine, and there is none; "
                          "a web address needs its scheme (https://…)")
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"config key data.url: the folder {url!r} holds no {', '.join(missing)}; name the folder "
                          f"that holds {', '.join(files)}")


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike,
                    command_line: dict[str, Any] | None = None,
                    texts_given: set[str] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults; the values ``command_line`` gave with Snakemake's
    ``--config``, which arrive as text, read as the schema's types); raise :class:`ConfigError` on the first
    problem. ``texts_given``: the texts the config files name (:func:`check_config_files`), so that a text set to
    null that none names is an error."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    if command_line:
        coerce_command_line_values(config, schema, command_line)
    drop_texts_set_to_null(config, texts_given)
    _check_plain_values(config)
    validator = _DefaultFilling(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_describe(errors[0]))
    canonical(config, schema)
    _check_consistency(config)
    return config


def drop_texts_set_to_null(config: dict[str, Any], given: set[str] | None = None) -> None:
    """Leave out every text whose entry is null (in place). A ``--configfile`` is merged over ``config.yaml`` key by
    key, so a text of ``config.yaml`` cannot be left out by leaving it out of one's file; ``texts: {train: null}``
    there does it. A null that leaves out no text, its name given an entry neither by a config file (``given``,
    where known) nor by ``--config``, is an error: ``texts: {trian: null}`` would run every job of ``train``."""
    texts = config.get("texts")
    if isinstance(texts, dict):
        dropped = [name for name, entry in texts.items() if entry is None]
        if given is not None:
            named = given | {str(name) for name, entry in texts.items() if entry is not None}
            for name in dropped:
                if str(name) not in named:
                    near = difflib.get_close_matches(str(name), sorted(named), n=1)
                    guess = f"; did you mean {near[0]!r}?" if near else ""
                    raise ConfigError(f"config key texts.{name}: null leaves out no text: no config file names a "
                                      f"text {name!r} (its texts: {', '.join(sorted(named))}){guess}")
        if dropped and len(dropped) == len(texts):
            raise ConfigError(f"config key texts: every text is set to null ({', '.join(dropped)}); "
                              "at least one analysis text is needed")
        for name in dropped:
            del texts[name]


def canonical(value: Any, schema: dict[str, Any]) -> Any:
    """One spelling for every config that means the same (in place for mappings), so that Snakemake, which
    compares a job's params with the last run's by their ``repr``, reruns nothing for a mere restatement: a
    section's keys in the schema's order (Snakemake puts the keys given by ``--config`` or ``--configfile``
    first, and a default filled in last), a number where the schema wants one as a float (``20`` = ``20.0``),
    a count as an int, and the lists whose order means nothing (``embedding.layers``, ``embedding.states``,
    ``cluster.linkages``) sorted (layers ascending, names in the schema's order)."""
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key in list(value):
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            value[key] = canonical(value[key], sub)
        if properties:
            order = {key: i for i, key in enumerate(properties)}
            items = sorted(value.items(), key=lambda kv: order.get(kv[0], len(order)))
            value.clear()
            value.update(items)
        return value
    if isinstance(value, list):
        items = [canonical(v, schema.get("items", {})) for v in value]
        if schema.get("x-unordered"):
            enum = schema.get("items", {}).get("enum")
            items.sort(key=(lambda v: enum.index(v)) if enum else None)
        return items
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and "number" in types:
        return float(value)
    if isinstance(value, float) and value.is_integer() and "integer" in types and "number" not in types:
        return int(value)
    return value


# Text names a CSV reader (pandas, as the pipeline's tables are read) takes for a missing value, a boolean or
# a number when a column holds only that name, as the text column of a table does: compared case-insensitively.
NOT_READ_AS_TEXT = frozenset({"na", "nan", "null", "none", "true", "false", "inf", "infinity"})


# Tokens (words and an <eos> per line) of the published WikiText-2 splits, by their SHA-256 (data.sha256's
# defaults): the analysis texts and the training's token counts are checked against these before any job runs
# (tests/test_config.py counts them in the files). Other files are checked by the jobs that read them.
PUBLISHED_SPLIT_TOKENS = {
    "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f": 2088628,  # train
    "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8": 217646,  # valid
    "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0": 245569,  # test
}
# Bins per neuron and (layer, state): the histogram job holds hidden_size x bins counts of 8 bytes.
MAX_BINS = 100_000


def _split_tokens(config: dict[str, Any], split: str) -> int | None:
    return PUBLISHED_SPLIT_TOKENS.get(config["data"]["sha256"][split])


def _check_jobs_can_run(config: dict[str, Any]) -> None:
    """Values each valid alone that a job would refuse, checked before any job runs."""
    from .histogram import H_RANGE, HistogramError, n_bins  # the jobs' own check (imports numpy, h5py)

    hist = config["histogram"]
    for what, (lo, hi) in (("h", H_RANGE), ("histogram.cell_range", hist["cell_range"])):
        # the count before the bins are made: [-1e308, 1e308] or 1e-310 wide bins are more than a float holds
        span = (float(hi) - float(lo)) / float(hist["bin_width"])
        if not span <= MAX_BINS + 0.5:
            count = (f"{span:.0f}" if span < 1e12 else f"{span:.3g}" if math.isfinite(span)
                     else "more than a float counts")
            raise ConfigError(f"config keys histogram.bin_width, histogram.cell_range: {hist['bin_width']} wide bins "
                              f"on [{lo}, {hi}] ({what}) are {count} bins per neuron; at most {MAX_BINS}")
        try:
            n_bins(float(lo), float(hi), float(hist["bin_width"]))
        except HistogramError:
            raise ConfigError(f"config key histogram.bin_width: {hist['bin_width']} does not divide the interval of "
                              f"{what}, [{lo}, {hi}], into whole bins") from None
    training = config["training"]
    for split in ("train", "valid", "test"):
        tokens, batch = training[f"{split}_tokens"], "batch_size" if split == "train" else "eval_batch_size"
        available = _split_tokens(config, split)
        if tokens is not None and available is not None and tokens > available:
            raise ConfigError(f"config key training.{split}_tokens: {tokens} is more than the {available} tokens of "
                              f"split {split!r}")
        if tokens is not None and tokens < 2 * training[batch]:
            raise ConfigError(f"config key training.{split}_tokens: {tokens} is too few for training.{batch} "
                              f"{training[batch]}; at least {2 * training[batch]}")
    for name, text in config["texts"].items():
        available, end = _split_tokens(config, text["split"]), text["offset"] + text["tokens"]
        if available is not None and end > available:
            raise ConfigError(f"config key texts.{name}: offset {text['offset']} + tokens {text['tokens']} = {end} is "
                              f"longer than split {text['split']!r} ({available} tokens)")
    emb, cl = config["embedding"], config["cluster"]
    if emb["seed"] in emb["stability_seeds"]:
        raise ConfigError(f"config key embedding.stability_seeds: {emb['seed']} is embedding.seed, the seed of the "
                          "map every other output shows; list only other seeds")
    if 3 * float(emb["perplexity"]) < 1:  # openTSNE's neighbours, int(3 * perplexity): none ended in its own error
        raise ConfigError(f"config key embedding.perplexity: {emb['perplexity']} is too small: openTSNE looks at "
                          "3 x perplexity neighbours of each point, at least 1; at least 1/3 (5 to 50 is usual)")
    for name in emb["texts"] if emb["dropouts"] is None or emb["dropouts"] else []:  # (null: every model)
        tokens = config["texts"][name]["tokens"]
        points = tokens if emb["max_tokens"] is None else min(tokens, emb["max_tokens"])
        if 3 * float(emb["perplexity"]) > points - 1:
            raise ConfigError(f"config key embedding.perplexity: {emb['perplexity']} is too large for the {points} "
                              f"tokens embedded of text {name} (embedding.max_tokens, texts.{name}.tokens); "
                              f"at most {(points - 1) / 3:.1f}")
        if cl["n_clusters"] is not None and cl["n_clusters"] > points:
            raise ConfigError(f"config key cluster.n_clusters: {cl['n_clusters']} is more than the {points} tokens "
                              f"embedded of text {name} (embedding.max_tokens, texts.{name}.tokens)")
        if "ward" in cl["linkages"] and points > cl["ward_max_points"]:
            raise ConfigError(f"config key cluster.ward_max_points: {cl['ward_max_points']} is fewer than the {points} "
                              f"tokens embedded of text {name}, which ward linkage would refuse; raise it, embed "
                              "fewer tokens (embedding.max_tokens) or leave ward out of cluster.linkages")


def _left_behind(field: str, missing: dict[str, list], show, verdict) -> ConfigError:
    """One error naming every list whose ``field`` (dropouts, texts) holds values the config no longer has, e.g.
    ``config key embedding.texts: 'test' is not a text of texts (train); nor is 'test' of ablation.texts``."""
    (first, items), *others = missing.items()
    also = "".join(f"; nor {'is' if len(more) == 1 else 'are'} {', '.join(map(show, more))} of {section}.{field}"
                   for section, more in others)
    return ConfigError(f"config key {first}.{field}: {', '.join(map(show, items))} {verdict(len(items))}{also}")


def _check_consistency(config: dict[str, Any]) -> None:
    seen: dict[str, str] = {}  # lower case -> name
    for name in config["texts"]:
        if name.lower() in NOT_READ_AS_TEXT:
            raise ConfigError(f"config key texts.{name}: a CSV table would read the name {name!r} back as a missing "
                              "value, a boolean or a number; choose another name")
        if name.lower() in seen:  # its files: results/activations/<model>/<name>.h5, …
            raise ConfigError(f"config key texts.{name}: the text {seen[name.lower()]!r} differs from it only in case; "
                              "their files would be one file where names ignore case (macOS, Windows)")
        seen[name.lower()] = name
    dropouts = [float(d) for d in config["models"]["dropouts"]]
    for d in dropouts:
        if 0 < d < 1e-6:  # its model name would be hundreds of characters (d0.000…)
            raise ConfigError(f"config key models.dropouts: {d} is below 1e-06; a dropout that small is none (use 0.0)")
    lists = ("embedding", "neuron_explorer", "ablation", "context_use")  # of models, each within models.dropouts
    # every list is checked before the error, so that one message names them all; null: every model
    untrained = {section: ds for section in lists
                 if (ds := [d for d in config[section]["dropouts"] or [] if float(d) not in dropouts])}
    if untrained:
        raise _left_behind("dropouts", untrained, str,
                           lambda n: f"{'is' if n == 1 else 'are'} not among models.dropouts {dropouts}")
    unknown = {section: ts for section in lists
               if (ts := [t for t in config[section]["texts"] if t not in config["texts"]])}
    if unknown:  # a text set to null can leave all four behind
        raise _left_behind("texts", unknown, repr, lambda n: f"{'is not a text' if n == 1 else 'are not texts'} of "
                                                             f"texts ({', '.join(config['texts'])})")
    longest = max(config["context_use"]["lengths"])
    for name in config["context_use"]["texts"]:  # a word to predict after the longest context, and one more
        if config["texts"][name]["tokens"] < longest + 2:
            raise ConfigError(f"config key context_use.lengths: a context of {longest} words leaves text {name} "
                              f"({config['texts'][name]['tokens']} tokens) too few words to predict after it; "
                              f"texts.{name}.tokens must be at least {longest + 2}, or lower the lengths, or leave "
                              f"{name} out of context_use.texts")
    layers = config["architecture"]["layers"]
    if config["embedding"]["layers"] is None:  # the default: every layer
        config["embedding"]["layers"] = list(range(1, layers + 1))
    for layer in config["embedding"]["layers"]:
        if layer > layers:
            raise ConfigError(f"config key embedding.layers: layer {layer} does not exist; architecture.layers is {layers}")
    ab, hidden = config["ablation"], config["architecture"]["hidden_size"]
    if ab["neurons"] + ab["random"] == 0:
        raise ConfigError("config keys ablation.neurons and ablation.random: both are 0; remove at least one neuron")
    if ab["neurons"] + ab["random"] > hidden:
        raise ConfigError(f"config keys ablation.neurons + ablation.random = {ab['neurons'] + ab['random']}: "
                          f"more than the {hidden} neurons of a layer (architecture.hidden_size)")
    for key in ("divergence.top_k", "divergence.track", "heatmap.neurons", "neuron_explorer.neurons",
                "probe.kl_neurons"):
        section, name = key.split(".")
        if config[section][name] is not None and config[section][name] > hidden:
            raise ConfigError(f"config key {key}: {config[section][name]} is more than the {hidden} neurons of a layer "
                              "(architecture.hidden_size)")
    word = config["figures"]["highlight_word"]
    if any(ch.isspace() for ch in word):  # (a schema pattern ^\S+$ would let a final newline through)
        raise ConfigError(f"config key figures.highlight_word: {word!r} is not one word (a token never holds a space)")
    checksums = config["data"]["sha256"]
    same = [split for split in checksums if list(checksums.values()).count(checksums[split]) > 1]
    if same:  # one file cannot be two splits: the download would retry and fail on one of them
        raise ConfigError(f"config key data.sha256: {' and '.join(same)} have the same checksum; each split is a "
                          "file of its own")
    url = config["data"]["url"]
    scheme = urllib.parse.urlparse(url).scheme if "://" in url else ""  # as download._fetch_once reads it
    if scheme not in ("", "file", "http", "https"):
        raise ConfigError(f"config key data.url: {url!r} has the scheme {scheme!r}; use http(s)://, file:// or a "
                          "directory")
    lo, hi = config["histogram"]["cell_range"]
    if not lo < hi:
        raise ConfigError(f"config key histogram.cell_range: {[lo, hi]} must be [low, high] with low < high")
    cl = config["cluster"]
    if (cl["n_clusters"] is None) == (cl["distance_threshold"] is None):
        raise ConfigError("config keys cluster.n_clusters and cluster.distance_threshold: set exactly one, the other null")
    if isinstance(cl["distance_threshold"], dict):
        lacking = [linkage for linkage in cl["linkages"] if linkage not in cl["distance_threshold"]]
        if lacking:
            raise ConfigError(f"config key cluster.distance_threshold: {cl['distance_threshold']} has no threshold for "
                              f"{', '.join(lacking)} (cluster.linkages: {', '.join(cl['linkages'])}); give one per "
                              "linkage, or one number for all")
    _check_jobs_can_run(config)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the experiment: a dropout and a replicate, with its derived seed."""

    dropout: float
    replicate: int
    seed: int

    @property
    def name(self) -> str:
        return model_name(self.dropout, self.replicate)


def distance_threshold(setting: float | dict | None, linkage: str) -> float | None:
    """The distance at which ``linkage``'s merging stops: ``cluster.distance_threshold`` is null (the clusters are
    counted instead), one number for every linkage, or one per linkage (ward's merge heights grow with the sizes of
    the clusters merged, so one number cuts single and ward linkage very differently)."""
    if isinstance(setting, dict):
        return float(setting[linkage])
    return None if setting is None else float(setting)


def dropout_label(dropout: float) -> str:
    """Canonical text of a dropout, the shortest that reads back as the same float, without an exponent:
    0.0 -> '0.0', 0.25 -> '0.25', 1e-05 -> '0.00001' (-0.0 -> '0.0')."""
    return format(decimal.Decimal(repr(float(dropout) + 0.0)), "f")


def model_name(dropout: float, replicate: int) -> str:
    return f"d{dropout_label(dropout)}_r{replicate}"


def model_seed(base_seed: int, dropout: float, replicate: int) -> int:
    """A seed derived from (base seed, dropout, replicate) alone.

    Adding or removing another dropout value never changes a model's seed.
    """
    digest = hashlib.sha256(f"{base_seed}:{dropout_label(dropout)}:{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def model_specs(config: dict[str, Any]) -> list[ModelSpec]:
    m = config["models"]
    return [
        ModelSpec(float(d), r, model_seed(m["base_seed"], float(d), r))
        for d in m["dropouts"]
        for r in range(m["replicates"])
    ]
