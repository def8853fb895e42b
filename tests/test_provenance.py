"""The code version every output records: the checkout's commit, marked dirty where the workflow was edited."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_the_commit_is_dirty_where_a_rule_script_or_module_is_edited(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo = tmp_path / "checkout"
    shutil.copytree(ROOT / "workflow" / "scripts" / "lstmscope", repo / "workflow" / "scripts" / "lstmscope",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "workflow" / "rules").mkdir()
    (repo / "workflow" / "rules" / "train.smk").write_text("# a rule\n")
    (repo / "workflow" / "scripts" / "train_lstm.py").write_text("# a rule's script\n")
    (repo / "README.md").write_text("notes\n")
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
