"""Recipes: an optimization is a list of stages, held as frozen dataclasses with one source of truth.

A recipe reads from and writes to YAML or JSON; the shipped recipes are package data files in
`tfopt/recipe_files/`. A bad field raises `RecipeError` naming the stage, the field and the values
it allows.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from tfopt.core import AEQ_PRECISIONS, CONVERTER_PRECISIONS
from tfopt.errors import TfoptError, first_line

PRECISION_NAMES = tuple(p.value for p in CONVERTER_PRECISIONS)
AEQ_NAMES = tuple(p.value for p in AEQ_PRECISIONS)
QUANTIZERS = ("converter", "aeq")
RUNTIME_FIELDS = {"threads": int, "xnnpack": bool, "accelerator": str, "cpu_options": list}


class RecipeError(TfoptError):
    """A recipe file or field is invalid."""


class StageKind(StrEnum):
    PRUNE = "prune"
    CLUSTER = "cluster"
    QAT = "qat"
    LOWRANK = "lowrank"
    DISTILL = "distill"
    CONVERT = "convert"


class Schedule(StrEnum):
    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"


class Unit(StrEnum):
    EPOCHS = "epochs"
    STEPS = "steps"


class CentroidInit(StrEnum):
    KMEANS_PLUS_PLUS = "kmeans_plus_plus"
    LINEAR = "linear"
    DENSITY_BASED = "density_based"
    RANDOM = "random"


def _fail(stage: str, name: str, value: Any, allowed: str) -> RecipeError:
    return RecipeError(f"recipe stage '{stage}': {name}={value!r} is invalid; {allowed}")


def _check_regex(stage: str, name: str, value: str | None) -> None:
    if value is None:
        return
    try:
        re.compile(value)
    except re.error as exc:
        raise _fail(stage, name, value, f"expected a regular expression ({exc})") from None


@dataclass(frozen=True)
class Stage:
    """Fields every training stage shares: how long and how fast it fine-tunes."""

    kind: ClassVar[StageKind]
    epochs: int | None = None  # None: the --epochs given to `tfopt optimize`
    learning_rate: float = 5e-4

    def __post_init__(self) -> None:
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 0):
            raise _fail(self.kind, "epochs", self.epochs, "expected an integer >= 0")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise _fail(self.kind, "learning_rate", self.learning_rate, "expected 0 < lr < 1")


@dataclass(frozen=True)
class PruneStage(Stage):
    """Magnitude pruning to `sparsity`, or `m_by_n` structured sparsity (e.g. 2:4)."""

    kind: ClassVar[StageKind] = StageKind.PRUNE
    sparsity: float = 0.5
    schedule: Schedule = Schedule.POLYNOMIAL
    start: float = 0.0
    end: float | None = None  # None: 70% into the fine-tune
    unit: Unit = Unit.EPOCHS
    block_size: tuple[int, int] = (1, 1)
    m_by_n: str | None = None
    layers: str | None = None  # regex of layers to prune; None: every prunable layer
    skip: str | None = None  # regex of layers to leave dense

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "schedule", _enum(Schedule, self.kind, "schedule", self.schedule))
        object.__setattr__(self, "unit", _enum(Unit, self.kind, "unit", self.unit))
        object.__setattr__(self, "block_size", tuple(self.block_size))
        if not isinstance(self.sparsity, (int, float)) or not 0.0 <= self.sparsity < 1.0:
            raise _fail(self.kind, "sparsity", self.sparsity, "expected 0 <= sparsity < 1")
        if self.start < 0 or (self.end is not None and self.end <= self.start):
            raise _fail(self.kind, "end", self.end, f"expected end > start ({self.start})")
        if len(self.block_size) != 2 or any(b < 1 for b in self.block_size):
            raise _fail(self.kind, "block_size", self.block_size, "expected two integers >= 1")
        if self.m_by_n is not None:
            m = re.fullmatch(r"(\d+):(\d+)", str(self.m_by_n))
            if not m or not 0 < int(m.group(1)) < int(m.group(2)):
                raise _fail(
                    self.kind, "m_by_n", self.m_by_n, "expected 'M:N' with 0 < M < N, e.g. 2:4"
                )
        _check_regex(self.kind, "layers", self.layers)
        _check_regex(self.kind, "skip", self.skip)

    @property
    def m_n(self) -> tuple[int, int] | None:
        if self.m_by_n is None:
            return None
        m, n = str(self.m_by_n).split(":")
        return int(m), int(n)


@dataclass(frozen=True)
class ClusterStage(Stage):
    """Weight clustering: each kernel keeps at most `clusters` unique values."""

    kind: ClassVar[StageKind] = StageKind.CLUSTER
    clusters: int = 16
    init: CentroidInit = CentroidInit.KMEANS_PLUS_PLUS
    per_channel: bool = False
    preserve_sparsity: bool = True
    skip: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "init", _enum(CentroidInit, self.kind, "init", self.init))
        if not isinstance(self.clusters, int) or self.clusters < 2:
            raise _fail(self.kind, "clusters", self.clusters, "expected an integer >= 2")
        _check_regex(self.kind, "skip", self.skip)


@dataclass(frozen=True)
class QatStage(Stage):
    """8-bit quantization-aware training; keeps earlier sparsity/clusters (PQAT/CQAT/PCQAT)."""

    kind: ClassVar[StageKind] = StageKind.QAT
    learning_rate: float = 1e-4


@dataclass(frozen=True)
class LowRankStage(Stage):
    """SVD-factorize Dense / EinsumDense / 1x1 Conv kernels into two smaller layers."""

    kind: ClassVar[StageKind] = StageKind.LOWRANK
    rank: int | None = None
    rank_fraction: float | None = None  # rank = fraction x min(in, out), when rank is None
    energy: float | None = 0.9  # kept fraction of squared singular values, when neither is set
    min_saving: float = 0.1  # factorize only when parameters shrink by at least this fraction
    min_dim: int = 32  # leave kernels whose smaller side is below this (e.g. a 10-class head)
    skip: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise _fail(self.kind, "rank", self.rank, "expected an integer >= 1")
        if self.rank_fraction is not None and not 0 < self.rank_fraction < 1:
            raise _fail(
                self.kind, "rank_fraction", self.rank_fraction, "expected 0 < rank_fraction < 1"
            )
        if (
            self.rank is None
            and self.rank_fraction is None
            and (self.energy is None or not 0 < self.energy <= 1)
        ):
            raise _fail(self.kind, "energy", self.energy, "expected 0 < energy <= 1 (or set rank)")
        if not isinstance(self.min_dim, int) or self.min_dim < 1:
            raise _fail(self.kind, "min_dim", self.min_dim, "expected an integer >= 1")
        if not 0 <= self.min_saving < 1:
            raise _fail(self.kind, "min_saving", self.min_saving, "expected 0 <= min_saving < 1")
        _check_regex(self.kind, "skip", self.skip)


@dataclass(frozen=True)
class DistillStage(Stage):
    """Fine-tune as a student of the original model: soft-target KL plus hard-label loss."""

    kind: ClassVar[StageKind] = StageKind.DISTILL
    temperature: float = 4.0
    alpha: float = 0.7  # weight of the soft-target term

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise _fail(self.kind, "temperature", self.temperature, "expected > 0")
        if not 0 <= self.alpha <= 1:
            raise _fail(self.kind, "alpha", self.alpha, "expected 0 <= alpha <= 1")


@dataclass(frozen=True)
class ConvertStage:
    """Convert to `.tflite` at a precision, as `tfopt convert` does."""

    kind: ClassVar[StageKind] = StageKind.CONVERT
    precision: str = "int8"
    int8_io: bool = False
    num_calibration: int = 100
    quantizer: str = "converter"  # or "aeq": the LiteRT quantizer on the float model
    keep_float: tuple[str, ...] = ()  # with aeq: op output names (regexes) left in float
    # TFLite metadata written into the file (see `tfopt.metadata.Metadata`); a relative label
    # path is read from the recipe file's folder.
    labels: str | None = None
    normalize: str | None = None  # "MEAN,STD"
    model_name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None

    def metadata(self, folder: Path | None = None) -> Any:
        """The `tfopt.metadata.Metadata` this stage writes (empty when it names none)."""
        from tfopt.metadata import Metadata

        labels = self.labels
        if labels is not None and folder is not None and not Path(labels).is_absolute():
            labels = str(folder / labels)
        return Metadata(
            name=self.model_name, description=self.description, version=self.version,
            author=self.author, license=self.license, labels=labels, normalize=self.normalize,
        )  # fmt: skip

    def __post_init__(self) -> None:
        for name in METADATA_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
                # YAML reads `version: 1.10` as 1.1 and `author: yes` as True: quote them
                raise _fail(self.kind, name, value, "expected text (quote it in YAML)")
            if isinstance(value, int):  # `version: 2`: unambiguous
                object.__setattr__(self, name, str(value))
        if self.normalize is not None:
            from tfopt.metadata import parse_normalize

            try:
                parse_normalize(self.normalize)
            except TfoptError as exc:
                raise _fail(self.kind, "normalize", self.normalize, str(exc)) from None
        if self.quantizer not in QUANTIZERS:
            raise _fail(self.kind, "quantizer", self.quantizer, "expected converter or aeq")
        allowed = PRECISION_NAMES if self.quantizer == "converter" else AEQ_NAMES
        if self.precision not in allowed:
            raise _fail(
                self.kind,
                "precision",
                self.precision,
                f"expected one of {', '.join(allowed)}",
            )
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        for regex in self.keep_float:
            _check_regex(self.kind, "keep_float", regex)
        if self.keep_float and self.quantizer != "aeq":
            raise _fail(self.kind, "keep_float", list(self.keep_float), "needs quantizer: aeq")
        if not isinstance(self.num_calibration, int) or self.num_calibration < 1:
            raise _fail(
                self.kind, "num_calibration", self.num_calibration, "expected an integer >= 1"
            )


METADATA_FIELDS = ("labels", "normalize", "model_name", "description", "version", "author", "license")


STAGES: dict[StageKind, type] = {
    cls.kind: cls
    for cls in (PruneStage, ClusterStage, QatStage, LowRankStage, DistillStage, ConvertStage)
}
AnyStage = PruneStage | ClusterStage | QatStage | LowRankStage | DistillStage | ConvertStage


def _enum(cls: type[StrEnum], stage: str, name: str, value: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise _fail(stage, name, value, f"expected one of {allowed}") from None


@dataclass(frozen=True)
class Recipe:
    """A named list of stages; ends with exactly one `convert` stage."""

    name: str
    stages: tuple[AnyStage, ...]
    description: str = ""
    _: dataclasses.KW_ONLY
    source: str | None = field(default=None, compare=False)
    runtime: dict[str, Any] | None = None  # how the file is run: threads, xnnpack, accelerator

    def __post_init__(self) -> None:
        if self.runtime is not None:
            _check_runtime(self.runtime)
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
            doc["runtime"] = dict(self.runtime)
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
    if not isinstance(runtime, dict):
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
