"""The code version every output records: the checkout's commit, marked dirty where the workflow was edited."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_the_commit_is_dirty_where_a_rule_script_or_module_is_edited(tmp_path):
    if shutil.which("git") is None:
        skip_or_fail("needs git")
    repo = tmp_path / "checkout"
    shutil.copytree(ROOT / "workflow" / "scripts" / "lstmscope", repo / "workflow" / "scripts" / "lstmscope",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "workflow" / "rules").mkdir()
    (repo / "workflow" / "rules" / "train.smk").write_text("# a rule\n")
    (repo / "workflow" / "scripts" / "train_lstm.py").write_text("# a rule's script\n")
    (repo / "README.md").write_text("notes\n")
    # the project's own ignore list: importing the library writes __pycache__/ (unless PYTHONDONTWRITEBYTECODE),
    # which the checkout ignores
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    env = {**os.environ, "PYTHONPATH": str(repo / "workflow" / "scripts")}

    def commit() -> str:
        r = subprocess.run([sys.executable, "-c", "from lstmscope.provenance import git_commit; print(git_commit())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
        return r.stdout.strip()

    clean = commit()
    assert re.fullmatch(r"[0-9a-f]{40}", clean), clean
    for edited in ("workflow/rules/train.smk", "workflow/scripts/train_lstm.py",
                   "workflow/scripts/lstmscope/training.py"):
        path = repo / edited
        before = path.read_text()
        path.write_text(before + "# edited\n")
        assert commit() == clean + "-dirty", edited
        path.write_text(before)
    (repo / "README.md").write_text("other notes\n")  # no code: the commit stays clean
    assert commit() == clean


def test_every_table_of_the_tiny_run_has_its_provenance_beside_it(tiny_run):
    """A CSV has no place for provenance: each table a job writes gets ``<table>.provenance.json``, naming the table's
    own SHA-256, the rule, wildcards and settings of its job, its inputs' SHA-256 and the code version."""
    import hashlib
    import json

    import yaml

    work = tiny_run / "pristine"
    config = yaml.safe_load((work / "config.yaml").read_text())
    for key, value in yaml.safe_load((work / "tests/config/tiny.yaml").read_text()).items():  # TINY's, over it
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    tables = sorted(p for p in (work / "results").rglob("*.csv") if "logs" not in p.parts)
    assert len(tables) > 20, tables

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    import h5py
    import numpy
    import scipy

    versions = {"numpy": numpy.__version__, "scipy": scipy.__version__, "h5py": h5py.__version__}
    from lstmscope.provenance import library_digest

    trained = {m.parent.name: json.loads(m.read_text()) for m in (work / "results/models").glob("*/metrics.json")}
    commits, digests, rules = set(), set(), set()
    for table in tables:
        record_path = table.with_name(table.name + ".provenance.json")
        assert record_path.is_file(), f"no provenance beside {table.relative_to(work)}"
        record = json.loads(record_path.read_text())
        assert record["table"] == table.name and record["table_sha256"] == sha(table), table
        # the models whose numbers it holds, each by its seed and checkpoint, not only through the inputs' chain
        if "model" in record["wildcards"]:
            assert list(record["models"]) == [record["wildcards"]["model"]], (table, record["models"])
        assert record["models"] and set(record["models"]) <= set(trained), (table, record["models"])
        for name, model in record["models"].items():
            assert model == {"dropout": trained[name]["dropout"], "replicate": trained[name]["replicate"],
                             "seed": trained[name]["seed"],
                             "checkpoint_sha256": sha(work / f"results/models/{name}/model.pt")}, (table, name)
        assert record["inputs"], table
        for path, digest in record["inputs"].items():
            assert "lstmscope/" not in path and digest == sha(work / path), (table, path)  # the code: library_sha256
        commits.add(record["git_commit"])
        digests.add(record["library_sha256"])
        rules.add(record["rule"])
        assert {k: record[k] for k in ("numpy", "scipy", "h5py")} == versions, table
        if table.name == "divergence.csv":
            model, text = table.parts[-3], table.parts[-2]
            assert record["rule"] == "neuron_divergence" and record["wildcards"] == {"model": model, "text": text}
            assert {k: record["settings"][k] for k in ("epsilon", "dead_fraction", "rank_by")} == {
                "epsilon": config["divergence"]["epsilon"], "dead_fraction": config["divergence"]["dead_fraction"],
                "rank_by": config["divergence"]["rank_by"]}
            assert list(record["inputs"]) == [f"results/neurons/{model}/{text}/histograms.h5"]
        if table.name == "histogram_range.csv":  # a model's, and the table of all (the settings its inputs had)
            assert {k: record["settings"][k] for k in ("bin_width", "cell_range", "near_zero")} == {
                "bin_width": config["histogram"]["bin_width"], "cell_range": config["histogram"]["cell_range"],
                "near_zero": config["divergence"]["dead_threshold"]}, table
        if "embedding" in table.parts:  # a map depends on the libraries' versions too
            seeded = table.parent.name.startswith("seed")  # a map of embedding.stability_seeds
            assert record["rule"] == ("embed_tsne_seed" if seeded else "embed_tsne"), record
            assert "openTSNE " in record["software"], record
            assert record["settings"]["initialization"] == (
                config["embedding"]["stability_initialization"] if seeded else "pca"), record
            assert record["settings"]["seed"] == (int(table.parent.name[4:]) if seeded else config["embedding"]["seed"])
    # the copy the tiny run works in is no git checkout (test_the_commit_is_dirty_… checks a checkout's commit)
    assert commits == {"unknown"}, commits
    assert digests == {library_digest()}, digests  # the library the jobs ran (a copy of this one's files)
    assert {"neuron_divergence", "embed_tsne", "cluster_tokens", "perplexity_table", "ablation_table"} <= rules, rules


def test_every_figure_of_the_tiny_run_names_the_code_that_drew_it(tiny_run, tmp_path):
    """A figure has its own place for provenance, its metadata: every PNG and SVG the jobs draw (and a PDF a command
    draws) names the version, commit and library digest of the code that drew it, and (``Description``, JSON) the
    job: its rule, the SHA-256 of each input file as it is on disk, and the models drawn, each with its dropout,
    replicate, seed and checkpoint SHA-256 (a model's figure names that model)."""
    import hashlib
    import html
    import json

    import matplotlib.pyplot as plt
    from PIL import Image

    from lstmscope import __version__
    from lstmscope.figures import save_figure_as, source
    from lstmscope.provenance import library_digest

    work = tiny_run / "pristine"
    said = f"lstmscope {__version__}, git unknown, library {library_digest()}"  # the copy is no git checkout
    pngs, svgs = (sorted((work / "results").rglob(f"*.{ext}")) for ext in ("png", "svg"))
    assert len(pngs) > 20 and len(svgs) == len(pngs), (len(pngs), len(svgs))
    trained = {}
    for model in (work / "results/models").iterdir():
        record = json.loads((model / "metrics.json").read_text())
        trained[model.name] = {"dropout": record["dropout"], "replicate": record["replicate"], "seed": record["seed"],
                               "checkpoint_sha256": hashlib.sha256((model / "model.pt").read_bytes()).hexdigest()}
    digests, most = {}, 0
    for png in pngs:
        with Image.open(png) as image:
            assert image.text.get("Source") == said, (png, image.text)
            job = json.loads(image.text["Description"])
        svg = png.with_suffix(".svg").read_text()
        assert f"<dc:source>{said}</dc:source>" in svg, png
        assert json.loads(html.unescape(re.search(r"<dc:description>(.*?)</dc:description>", svg, re.S)[1])) == job
        assert job["rule"] and job["inputs"], (png, job)
        for path, digest in job["inputs"].items():
            if digest != "a folder":
                if path not in digests:
                    digests[path] = hashlib.sha256((work / path).read_bytes()).hexdigest()
                assert digest == digests[path], (png, path)
        assert all(trained[name] == fields for name, fields in job["models"].items()), (png, job["models"])
        drawn = [part for part in png.relative_to(work / "results/figures").parts if part in trained]
        assert all(name in job["models"] for name in drawn), (png, job["models"])
        most = max(most, len(job["models"]))
    assert most == len(trained) > 1  # a figure across the models names them all
    fig, _ = plt.subplots()
    save_figure_as(fig, tmp_path / "f.pdf")  # in this process: this checkout's commit
    assert f"/Subject ({source()})".encode() in (tmp_path / "f.pdf").read_bytes() and "library " in source()


def test_every_explorer_page_of_the_tiny_run_names_the_code_and_the_model_it_shows(tiny_run):
    """An explorer page travels alone (sent, put on a web page), and so does Table 5.1's page: each one the jobs
    write, the report's too, holds its provenance (the code's version, commit and digest; its model's dropout,
    replicate, seed and checkpoint SHA-256; the rule that wrote it) in its data (Table 5.1's page, which has none, in
    a record of its own) and says it in a line a reader sees."""
    import hashlib
    import html
    import json
    import re

    from lstmscope import __version__
    from lstmscope.html_page import page_rule
    from lstmscope.provenance import library_digest

    work = tiny_run / "pristine"
    pages = sorted((work / "results/explorer").rglob("*.html"))
    assert {p.parent.name for p in pages} == {"explorer", "neurons", "report"} and len(pages) >= 3, pages
    tables = sorted((work / "results/tables/clusters").glob("*_top_words.html"))  # Table 5.1 as a page
    assert tables, "no Table 5.1 page"
    for page in pages + tables:
        text = page.read_text()
        model = "_".join(page.stem.split("_")[:2])  # d0.0_r0_test -> d0.0_r0
        trained = json.loads((work / f"results/models/{model}/metrics.json").read_text())
        checkpoint = hashlib.sha256((work / f"results/models/{model}/model.pt").read_bytes()).hexdigest()
        rule = {"explorer": "explorer", "neurons": "neuron_explorer", "report": "neuron_explorer",
                "clusters": "cluster_measures"}[page.parent.name]
        if page in tables:  # no page data: the record alone
            data = {"provenance": json.loads(re.search(
                r'<script type="application/json" id="lstmscope-provenance">(.*?)</script>', text, flags=re.S)[1])}
        else:
            data = json.loads(re.search(r'<script type="application/json" id="lstmscope-data">(.*?)</script>', text,
                                        flags=re.S).group(1))
        assert data["provenance"] == {
            "lstmscope_version": __version__, "git_commit": "unknown", "library_sha256": library_digest(),
            "models": {model: {"dropout": trained["dropout"], "replicate": trained["replicate"],
                               "seed": trained["seed"], "checkpoint_sha256": checkpoint}},
            "rule": rule}, page
        assert page_rule(page) == rule  # what lstmscope-explorer reads before it would replace a page
        seen = html.unescape(re.search(r'<footer id="provenance"[^>]*>(.*?)</footer>', text, flags=re.S).group(1))
        assert seen == (f"Made by lstmscope {__version__} (git unknown, library {library_digest()[:12]}…) from model "
                        f"{model} (dropout {trained['dropout']}, replicate {trained['replicate']}, seed "
                        f"{trained['seed']}, checkpoint SHA-256 {checkpoint[:12]}…)."), (page, seen)


def test_a_pipeline_table_cut_short_at_a_line_is_refused_by_its_record_and_read_as_it_is_without(tiny_workdir):
    """A table cut short at a line parses as a smaller table (a layer gone from a summary, half the tokens
    clustered): a reader of a table with a record beside it checks the table's SHA-256 against it."""
    from lstmscope.cluster_measures import read_measures
    from lstmscope.divergence import read_divergence
    from lstmscope.histogram import HistogramError
    from lstmscope.points import read_embedding

    results = tiny_workdir / "results"
    cases = [(next((results / "neurons").rglob("divergence.csv")), read_divergence, HistogramError),
             (next((results / "embedding").rglob("layer1_h.csv")), read_embedding, ValueError),
             (next((results / "tables").rglob("*_measures.csv")), lambda p: read_measures([p]), ValueError)]
    for path, read, error in cases:
        rows = len(read(path))
        lines = path.read_text().splitlines(keepends=True)
        assert len(lines) == rows + 1 > 2, path
        path.write_text("".join(lines[:-1]))  # the last line gone
        with pytest.raises(error, match=rf"^{re.escape(str(path))}: not the table its record "
                                        rf"{re.escape(path.name)}\.provenance\.json describes \(SHA-256 differs\): "
                                        r"cut short or changed since it was written; write it again \(snakemake "
                                        r"--forcerun (neuron_divergence|embed_tsne|cluster_measures)\)"):
            read(path)
        Path(f"{path}.provenance.json").unlink()  # no record (a table made by hand): read as it stands
        if read is read_divergence:  # which refuses a table without its last neuron by itself
            with pytest.raises(error, match=r"lacks neuron"):
                read(path)
        else:
            assert len(read(path)) == rows - 1


def test_models_of_reads_each_kind_of_input_and_names_no_model_for_one_without_a_readable_record(tmp_path):
    """The models a table's record names: from an activations file's provenance, the activations provenance a
    histograms file carries, a training's metrics, a table's record; a file whose provenance is damaged names none
    (this runs after a job's outputs are written, and must not fail it then)."""
    import json

    import h5py

    from lstmscope.provenance import models_of

    def model(name, seed):
        return {"dropout": 0.5, "replicate": 0, "seed": seed, "checkpoint_sha256": f"sha-{name}"}

    dumped, binned, trained, table = (tmp_path / n for n in ("a.h5", "h.h5", "metrics.json", "t.csv"))
    with h5py.File(dumped, "w") as f:
        f.attrs["provenance"] = json.dumps({"model": "m1", **model("m1", 11), "text": "test"})
    with h5py.File(binned, "w") as f:  # its own provenance, the activations' within it
        f.attrs["provenance"] = json.dumps({"bin_width": 0.01, "activations_provenance": {"model": "m2",
                                                                                            **model("m2", 12)}})
    fields = {k: v for k, v in model("m3", 13).items() if k != "checkpoint_sha256"}  # the checkpoint's: in provenance
    trained.write_text(json.dumps({"model": "m3", **fields, "provenance": {"checkpoint_sha256": "sha-m3"}}))
    table.write_text("a\n1\n")
    (tmp_path / "t.csv.provenance.json").write_text(json.dumps({"models": {"m4": model("m4", 14)}}))
    assert models_of([dumped, binned, trained, table]) == {f"m{i}": model(f"m{i}", 10 + i) for i in (1, 2, 3, 4)}

    damaged = []
    for name, text in (("list.h5", "[]"), ("cut.h5", "{cut")):
        with h5py.File(tmp_path / name, "w") as f:
            f.attrs["provenance"] = text
        damaged.append(tmp_path / name)
    for name, text in (("list.json", "[]"), ("cut.json", "{cut"), ("plain.json", '{"provenance": 3}')):
        (tmp_path / name).write_text(text)
        damaged.append(tmp_path / name)
    for name, record in (("none.csv", '{"models": null}'), ("list.csv", "[]"), ("cut.csv", "{")):
        (tmp_path / name).write_text("a\n1\n")
        (tmp_path / f"{name}.provenance.json").write_text(record)
        damaged.append(tmp_path / name)
    (tmp_path / "words.txt").write_text("a text\n")
    assert models_of([*damaged, tmp_path / "words.txt", dumped]) == {"m1": model("m1", 11)}


def test_record_tables_hashes_each_input_file_names_a_folder_and_leaves_the_library_to_its_digest(tmp_path):
    """A job's record: every CSV output gets one (other outputs none); an input file is hashed, a folder named (it has
    no one digest), the library's own modules left out (``library_sha256`` covers them)."""
    import hashlib
    import json
    from types import SimpleNamespace

    from lstmscope import provenance

    table, figure = tmp_path / "t.csv", tmp_path / "f.png"
    table.write_text("a,b\n1,2\n")
    figure.write_bytes(b"png")
    held = tmp_path / "held"
    held.mkdir()
    (held / "x.txt").write_text("x\n")
    data = tmp_path / "d.txt"
    data.write_text("words\n")
    module = Path(provenance.__file__)
    job = SimpleNamespace(rule="a_rule", wildcards={"model": "d0.1_r0"}, params={"bins": 3, "settings": object()},
                          input=[str(data), str(held), str(module)], output=[str(table), str(figure)])
    written = provenance.record_tables(job, software="x 1")
    assert written == [tmp_path / "t.csv.provenance.json"]
    assert sorted(os.listdir(tmp_path)) == ["d.txt", "f.png", "held", "t.csv", "t.csv.provenance.json"]
    record = json.loads(written[0].read_text())
    assert record["inputs"] == {str(data): hashlib.sha256(b"words\n").hexdigest(), str(held): "a folder"}
    assert record["settings"] == {"bins": 3} and record["rule"] == "a_rule" and record["software"] == "x 1"
    assert record["wildcards"] == {"model": "d0.1_r0"}
    assert record["table_sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert record["library_sha256"] == provenance.library_digest()
