"""Recipes: an optimization is a list of stages, held as frozen dataclasses with one source of truth.

A recipe reads from and writes to YAML or JSON; the shipped recipes are package data files in
`tfopt/recipe_files/`. Its stages are in `tfopt.recipe_stages` (re-exported here); its `runtime`,
how its file runs best, is an `evaluation.Runtime`. A bad field raises `RecipeError` naming the
stage, the field and the values it allows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from tfopt.errors import first_line
from tfopt.evaluation import Runtime
from tfopt.recipe_stages import (
    METADATA_FIELDS,
    STAGES,
    AnyStage,
    CentroidInit,
    ChannelsStage,
    ClusterStage,
    ConvertStage,
    Criterion,
    DistillStage,
    LowRankStage,
    PruneStage,
    QatStage,
    RecipeError,
    Schedule,
    Stage,
    StageKind,
    Unit,
)

__all__ = [
    "METADATA_FIELDS", "STAGES", "AnyStage", "CentroidInit", "ChannelsStage", "ClusterStage",
    "ConvertStage", "Criterion", "DistillStage", "LowRankStage", "PruneStage", "QatStage",
    "Recipe", "RecipeError", "Schedule", "Stage", "StageKind", "Unit", "dump", "load_recipe", "parse", "shipped",
]  # fmt: skip

# A recipe's `runtime` fields and the type each takes in YAML/JSON (a list for the tuple).
RUNTIME_FIELDS = {f.name: list if f.name == "cpu_options" else type(f.default)
                  for f in fields(Runtime)}  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """A named list of stages; ends with exactly one `convert` stage."""

    name: str
    stages: tuple[AnyStage, ...]
    description: str = ""
    _: dataclasses.KW_ONLY
    source: str | None = field(default=None, compare=False)
    # How the file is run (threads, xnnpack, accelerator, cpu_options); a mapping is read with
    # its missing fields at their defaults.
    runtime: Runtime | None = None

    def __post_init__(self) -> None:
        if self.runtime is not None and not isinstance(self.runtime, Runtime):
            _check_runtime(self.runtime)
            object.__setattr__(self, "runtime", Runtime.from_dict(self.runtime))
        if not self.stages:
            raise RecipeError(f"recipe '{self.name}' has no stages")
        kinds = [s.kind for s in self.stages]
        if kinds.count(StageKind.CONVERT) != 1 or kinds[-1] is not StageKind.CONVERT:
            raise RecipeError(
                f"recipe '{self.name}': exactly one 'convert' stage, and it must be last"
            )
        if StageKind.QAT in kinds and any(
            k in (StageKind.PRUNE, StageKind.CLUSTER, StageKind.LOWRANK, StageKind.DISTILL)
            for k in kinds[kinds.index(StageKind.QAT) :]
        ):
            raise RecipeError(
                f"recipe '{self.name}': 'qat' must come after prune, cluster, lowrank and distill"
            )
        if StageKind.CHANNELS in kinds and any(
            k in (StageKind.PRUNE, StageKind.CLUSTER, StageKind.QAT)
            for k in kinds[: kinds.index(StageKind.CHANNELS)]
        ):
            raise RecipeError(
                f"recipe '{self.name}': 'channels' rebuilds the model, so it must come before "
                "prune, cluster and qat"
            )
        if (
            StageKind.CLUSTER in kinds
            and StageKind.DISTILL in kinds[kinds.index(StageKind.CLUSTER) :]
        ):
            raise RecipeError(
                f"recipe '{self.name}': 'distill' after 'cluster' would undo the clusters"
            )

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "description": self.description,
            "stages": [_stage_to_dict(s) for s in self.stages],
        }
        if self.runtime is not None:
            doc["runtime"] = self.runtime.to_dict()
        return doc

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> Recipe:
        if not isinstance(data, dict):
            raise RecipeError(f"recipe {source or ''} must be a mapping with 'name' and 'stages'")
        unknown = set(data) - {"name", "description", "stages", "runtime"}
        if unknown:
            raise RecipeError(
                f"recipe: unknown field(s) {', '.join(sorted(unknown))}; "
                "allowed: name, description, stages, runtime"
            )
        stages = data.get("stages")
        if not isinstance(stages, list):
            raise RecipeError("recipe: 'stages' must be a list")
        return cls(
            str(data.get("name") or (Path(source).stem if source else "recipe")),
            tuple(_stage_from_dict(s) for s in stages),
            str(data.get("description", "")),
            source=source,
            runtime=data.get("runtime"),
        )


def _check_runtime(runtime: Any) -> None:
    """A recipe's `runtime`: the thread count, XNNPACK and accelerator its file is timed with."""
    if not isinstance(runtime, Mapping):
        raise RecipeError("recipe: 'runtime' must be a mapping (threads, xnnpack, accelerator)")
    for name, value in runtime.items():
        kind = RUNTIME_FIELDS.get(name)
        if kind is None:
            raise RecipeError(
                f"recipe runtime: unknown field '{name}'; allowed: {', '.join(RUNTIME_FIELDS)}"
            )
        if name == "cpu_options" and isinstance(value, (list, tuple)):
            if all(isinstance(v, str) and "=" in v for v in value):
                continue
            raise RecipeError(f"recipe runtime: cpu_options={value!r} is invalid; expected "
                              "a list of KEY=VALUE strings")  # fmt: skip
        if type(value) is not kind or (name == "threads" and value < 1):
            raise RecipeError(f"recipe runtime: {name}={value!r} is invalid; expected {kind.__name__}"
                              + (" >= 1" if name == "threads" else ""))


def _stage_to_dict(stage: AnyStage) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": stage.kind.value}
    for f in fields(stage):
        value = getattr(stage, f.name)
        if value is None and f.default is None:
            continue  # an unset optional key stays out of the file
        out[f.name] = (
            value.value
            if isinstance(value, StrEnum)
            else list(value)
            if isinstance(value, tuple)
            else value
        )
    return out


def _stage_from_dict(data: Any) -> AnyStage:
    if not isinstance(data, dict) or "stage" not in data:
        raise RecipeError("recipe: every stage is a mapping with a 'stage' field")
    kind_name = data["stage"]
    try:
        kind = StageKind(kind_name)
    except ValueError:
        allowed = ", ".join(k.value for k in StageKind)
        raise RecipeError(f"recipe: unknown stage '{kind_name}'; allowed: {allowed}") from None
    cls = STAGES[kind]
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names - {"stage"}
    if unknown:
        raise RecipeError(
            f"recipe stage '{kind}': unknown field(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    kwargs = {k: v for k, v in data.items() if k != "stage"}
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise RecipeError(f"recipe stage '{kind}': {exc}") from None


def shipped() -> list[str]:
    """Names of the recipes that ship with tfopt."""
    folder = resources.files("tfopt") / "recipe_files"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def parse(text: str, source: str) -> Recipe:
    """Parse YAML (a superset of JSON) recipe text."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML/JSON ({first_line(exc)})") from None
    return Recipe.from_dict(data, source)


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name, or a `.yaml` / `.yml` / `.json` file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        return parse(path.read_text(encoding="utf-8"), str(path))
    if str(name_or_path) not in shipped():
        raise RecipeError(
            f"unknown recipe '{name_or_path}'; shipped: {', '.join(shipped())} (or a .yaml/.json file)"
        )
    text = (resources.files("tfopt") / "recipe_files" / f"{name_or_path}.yaml").read_text(
        encoding="utf-8"
    )
    return parse(text, f"{name_or_path}.yaml")


def dump(recipe: Recipe, path: str | Path) -> None:
    """Write a recipe as YAML (`.yaml`/`.yml`) or JSON (`.json`), atomically."""
    from tfopt.fsutil import write_text

    if str(path).endswith(".json"):
        write_text(path, json.dumps(recipe.to_dict(), indent=2) + "\n")
    else:
        import yaml

        write_text(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))
