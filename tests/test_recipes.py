"""Recipes: one source of truth, round trips, and one clear line for every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import invoke
from tfopt.recipes import (
    ClusterStage,
    ConvertStage,
    PruneStage,
    Recipe,
    RecipeError,
    dump,
    load_recipe,
    parse,
    shipped,
)

SHIPPED = [
    "int8",
    "prune50-int8",
    "prune2of4-int8",
    "qat-int8",
    "prune50-qat-int8",
    "cluster16-qat-int8",
    "lowrank-dynamic",
    "distill-prune75-int8",
    "channels30-int8",
    "channels50-int8",
    "channels30-float16",
]


def test_the_issue_recipes_ship() -> None:
    assert sorted(shipped()) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_shipped_recipe_round_trips(name: str, suffix: str, tmp_path: Path) -> None:
    recipe = load_recipe(name)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    dump(recipe, tmp_path / f"r{suffix}")
    again = load_recipe(tmp_path / f"r{suffix}")
    assert again == recipe and again.to_dict() == recipe.to_dict()


def test_stage_fields() -> None:
    prune = load_recipe("prune2of4-int8").stages[0]
    assert isinstance(prune, PruneStage) and prune.m_n == (2, 4)
    cluster = load_recipe("cluster16-qat-int8").stages[0]
    assert isinstance(cluster, ClusterStage) and cluster.clusters == 16
    assert load_recipe("lowrank-dynamic").stages[-1] == ConvertStage(precision="dynamic")


def test_tuned_recipe_round_trips(tmp_path: Path) -> None:
    """What `tfopt tune` writes: the LiteRT quantizer, op groups kept in float, a runtime."""
    recipe = Recipe(
        "tuned",
        (PruneStage(sparsity=0.5), ConvertStage("int8", quantizer="aeq", keep_float=("^a;", "b"))),
        runtime={"threads": 2, "xnnpack": True, "accelerator": "cpu"},
    )
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    dump(recipe, tmp_path / "best.yaml")
    assert load_recipe(tmp_path / "best.yaml") == recipe


BAD = {
    "unknown-stage": ("stages: [{stage: sharpen}, {stage: convert}]", "unknown stage 'sharpen'"),
    "sparsity": ("stages: [{stage: prune, sparsity: 1.5}, {stage: convert}]", "sparsity=1.5"),
    "clusters": ("stages: [{stage: cluster, clusters: 0}, {stage: convert}]", "clusters=0"),
    "schedule": (
        "stages: [{stage: prune, schedule: cubic}, {stage: convert}]",
        "polynomial, constant",
    ),
    "m-by-n": ("stages: [{stage: prune, m_by_n: '4:2'}, {stage: convert}]", "m_by_n"),
    "unknown-field": ("stages: [{stage: qat, bits: 4}, {stage: convert}]", "unknown field(s) bits"),
    "no-convert": ("stages: [{stage: qat}]", "exactly one 'convert' stage"),
    "qat-first": (
        "stages: [{stage: qat}, {stage: prune}, {stage: convert}]",
        "'qat' must come after",
    ),
    "precision": ("stages: [{stage: convert, precision: int4}]", "precision='int4'"),
    "regex": ("stages: [{stage: prune, skip: '('}, {stage: convert}]", "regular expression"),
    "not-yaml": ("stages: [", "not valid YAML"),
    "quantizer": ("stages: [{stage: convert, quantizer: tflm}]", "expected converter or aeq"),
    "keep-float-without-aeq": (
        "stages: [{stage: convert, precision: int8, keep_float: [dense]}]",
        "needs quantizer: aeq",
    ),
    "runtime-field": ("runtime: {cores: 2}\nstages: [{stage: convert}]", "unknown field 'cores'"),
    "runtime-threads": ("runtime: {threads: 0}\nstages: [{stage: convert}]", "threads=0"),
    "channels-both": (
        "stages: [{stage: channels, ratio: 0.3, macs: 0.3}, {stage: convert}]",
        "exactly one of ratio or macs",
    ),
    "channels-macs": ("stages: [{stage: channels, macs: 1.2}, {stage: convert}]", "macs=1.2"),
    "channels-criterion": (
        "stages: [{stage: channels, ratio: 0.3, criterion: l3}]",
        "expected one of l1, l2",
    ),
    "channels-alpha": (
        "stages: [{stage: channels, ratio: 0.3, alpha: 1.5}, {stage: convert}]",
        "alpha=1.5",
    ),
    "channels-after-prune": (
        "stages: [{stage: prune}, {stage: channels, ratio: 0.3}, {stage: convert}]",
        "'channels' rebuilds the model",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_recipe_is_one_clear_error(case: str) -> None:
    text, fragment = BAD[case]
    with pytest.raises(RecipeError) as info:
        parse(text, "bad.yaml")
    assert fragment in str(info.value.message)
    assert "\n" not in info.value.message


def test_bad_recipe_through_the_cli(
    runner: CliRunner, files: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "bad.yaml").write_text("stages: [{stage: prune, sparsity: 1.5}, {stage: convert}]")
    result = invoke(
        runner,
        "optimize",
        files["keras"],
        "--recipe",
        tmp_path / "bad.yaml",
        "--data",
        files["test"],
        "-o",
        tmp_path / "out",
    )
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "sparsity=1.5" in result.stderr
    assert not (tmp_path / "out").exists()
    unknown = invoke(
        runner,
        "optimize",
        files["keras"],
        "--recipe",
        "prune99",
        "--data",
        files["test"],
        "-o",
        tmp_path / "o",
    )
    assert unknown.exit_code == 1 and "shipped:" in unknown.stderr


def test_recipes_command(runner: CliRunner) -> None:
    listing = invoke(runner, "recipes", "--json")
    assert set(__import__("json").loads(listing.stdout)) == set(SHIPPED)
    shown = invoke(runner, "recipes", "qat-int8")
    assert shown.exit_code == 0 and "stage: qat" in shown.stdout
