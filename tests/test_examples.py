"""Every script in examples/ runs (small settings) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("int8_from_files.py", ["--epochs", "5"], "top-1 agreement"),
        ("keras_hub_bert.py", ["--seq-len", "16", "--layers", "1"], "dynamic vs float32"),
        (
            "fashion_mnist/run.py",
            [
                "--limit-train",
                "600",
                "--epochs",
                "1",
                "--base-epochs",
                "1",
                "--recipes",
                "int8,lowrank-dynamic",
                "--threads",
                "1",
            ],
            "lowrank-dynamic smaller than dynamic",
        ),
        (
            "bert_fortunes/run.py",
            ["--limit", "40", "--base-epochs", "1", "--recipes", "prune2of4-int8"],
            "prune2of4-int8",
        ),
        (
            "gpt2_fortunes/train.py",
            ["--minutes", "0.05", "--layers", "1", "--hidden", "64", "--seq-len", "32"],
            "greedy sample",
        ),
    ],
    ids=["int8_from_files", "keras_hub_bert", "fashion_mnist", "bert_fortunes", "gpt2_fortunes"],
)
def test_example_runs(script: str, args: list[str], expect: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expect in proc.stdout


def test_every_example_has_a_test() -> None:
    tested = {
        "int8_from_files.py",
        "keras_hub_bert.py",
        "fashion_mnist/run.py",
        "bert_fortunes/run.py",
        "gpt2_fortunes/train.py",
    }
    assert {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.py")} == tested
