"""The stages of a recipe: frozen dataclasses with `str` enums, each field checked on creation.

A bad field raises `RecipeError` naming the stage, the field and the values it allows. The last
stage of every recipe is a `ConvertStage`, which builds the `ConvertRequest` optimize converts with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from tfopt.conversion.request import ConvertRequest, Quantizer
from tfopt.core import AEQ_PRECISIONS, CONVERTER_PRECISIONS, Precision
from tfopt.errors import TfoptError
from tfopt.metadata import Metadata, parse_normalize


class RecipeError(TfoptError):
    """A recipe file or field is invalid."""


class StageKind(StrEnum):
    PRUNE = "prune"
    CHANNELS = "channels"
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


class Criterion(StrEnum):
    L1 = "l1"
    L2 = "l2"


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

    @property
    def learns_from_teacher(self) -> bool:
        """Whether the fine-tune needs the original model as a teacher."""
        return False


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
    # "xnnpack": tfmot's PruneForLatencyOnXNNPack, only the 1x1 convolutions XNNPACK's sparse
    # (NCHW SpMM) kernels run, and on tf_keras a check that the model's layout allows them.
    policy: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy not in (None, "xnnpack"):
            raise _fail(self.kind, "policy", self.policy, "expected xnnpack (or no policy)")
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
class ChannelsStage(Stage):
    """Structured pruning: whole filters/channels with the lowest norm removed, then fine-tuned.

    The model that comes out is smaller and dense, so its MACs fall in every precision. Either
    `ratio` (the fraction of channels removed in every prunable group) or `macs` (the fraction of
    the model's multiply-adds to remove; the ratio is searched) is set. Kept channel counts are
    multiples of `multiple` and at least `min_channels`. `alpha` > 0: the fine-tune also learns
    from the original model's outputs softened by `temperature`, as the distill stage does.
    """

    kind: ClassVar[StageKind] = StageKind.CHANNELS
    ratio: float | None = None
    macs: float | None = None
    criterion: Criterion = Criterion.L2
    multiple: int = 8
    min_channels: int = 8
    residual: bool = False  # also prune groups an Add joins (residual streams: narrow, costly)
    skip: str | None = None  # regex of producer layers whose channels stay
    alpha: float = 0.0  # > 0: fine-tune as the original model's student (the distill stage's loss)
    temperature: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(
            self, "criterion", _enum(Criterion, self.kind, "criterion", self.criterion)
        )
        if (self.ratio is None) == (self.macs is None):
            raise _fail(self.kind, "ratio", self.ratio, "expected exactly one of ratio or macs")
        for name in ("ratio", "macs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not 0 < value < 1):
                raise _fail(self.kind, name, value, f"expected 0 < {name} < 1")
        for name in ("multiple", "min_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise _fail(self.kind, name, value, "expected an integer >= 1")
        if not isinstance(self.residual, bool):
            raise _fail(self.kind, "residual", self.residual, "expected true or false")
        _check_regex(self.kind, "skip", self.skip)
        _check_distill(self.kind, self.temperature, self.alpha)

    @property
    def learns_from_teacher(self) -> bool:
        return self.alpha > 0


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
        _check_distill(self.kind, self.temperature, self.alpha)

    @property
    def learns_from_teacher(self) -> bool:
        return True


def _check_distill(kind: str, temperature: Any, alpha: Any) -> None:
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise _fail(kind, "temperature", temperature, "expected > 0")
    if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise _fail(kind, "alpha", alpha, "expected 0 <= alpha <= 1")


# The stage's metadata fields are `tfopt.metadata.Metadata`'s, its `name` called `model_name`
# here (a recipe has a name of its own).
_STAGE_NAME = {"name": "model_name"}
METADATA_FIELDS = tuple(_STAGE_NAME.get(f.name, f.name) for f in fields(Metadata))


@dataclass(frozen=True)
class ConvertStage:
    """Convert to `.tflite` at a precision, as `tfopt convert` does."""

    kind: ClassVar[StageKind] = StageKind.CONVERT
    precision: Precision = Precision.INT8
    int8_io: bool = False
    num_calibration: int = 100
    quantizer: Quantizer = Quantizer.CONVERTER  # or AEQ: the LiteRT quantizer on the float model
    keep_float: tuple[str, ...] = ()  # with aeq: op output names (regexes) left in float
    # TFLite metadata written into the file (METADATA_FIELDS, see `tfopt.metadata.Metadata`); a
    # relative label path is read from the recipe file's folder.
    labels: str | None = None
    normalize: str | None = None  # "MEAN,STD"
    model_name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None

    def metadata(self, folder: Path | None = None) -> Metadata:
        """The `tfopt.metadata.Metadata` this stage writes (empty when it names none)."""
        doc = {f.name: getattr(self, _STAGE_NAME.get(f.name, f.name)) for f in fields(Metadata)}
        labels = doc["labels"]
        if labels is not None and folder is not None and not Path(labels).is_absolute():
            doc["labels"] = str(folder / labels)
        return Metadata(**doc)

    def request(self, folder: Path | None = None, **options: Any) -> ConvertRequest:
        """The `ConvertRequest` this stage makes (`folder`: where relative label paths start;
        `options`: the other `ConvertRequest` fields, e.g. calibration, check, seq_len)."""
        return ConvertRequest(precision=self.precision, num_calibration=self.num_calibration,
                              int8_io=self.int8_io, quantizer=self.quantizer,
                              keep_float=self.keep_float, metadata=self.metadata(folder) or None,
                              **options)  # fmt: skip

    def __post_init__(self) -> None:
        for name in METADATA_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
                # YAML reads `version: 1.10` as 1.1 and `author: yes` as True: quote them
                raise _fail(self.kind, name, value, "expected text (quote it in YAML)")
            if isinstance(value, int):  # `version: 2`: unambiguous
                object.__setattr__(self, name, str(value))
        if self.normalize is not None:
            try:
                parse_normalize(self.normalize)
            except TfoptError as exc:
                raise _fail(self.kind, "normalize", self.normalize, str(exc)) from None
        self._check_precision()
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        for regex in self.keep_float:
            _check_regex(self.kind, "keep_float", regex)
        if self.keep_float and self.quantizer is not Quantizer.AEQ:
            raise _fail(self.kind, "keep_float", list(self.keep_float), "needs quantizer: aeq")
        if not isinstance(self.num_calibration, int) or self.num_calibration < 1:
            raise _fail(
                self.kind, "num_calibration", self.num_calibration, "expected an integer >= 1"
            )

    def _check_precision(self) -> None:
        """`quantizer` and `precision` as their enums; the precision one the quantizer makes."""
        try:
            object.__setattr__(self, "quantizer", Quantizer(self.quantizer))
        except ValueError:
            raise _fail(self.kind, "quantizer", self.quantizer, "expected converter or aeq") from None
        allowed = CONVERTER_PRECISIONS if self.quantizer is Quantizer.CONVERTER else AEQ_PRECISIONS
        value = self.precision
        if value not in {p.value for p in allowed}:
            shown = value.value if isinstance(value, Precision) else value
            raise _fail(self.kind, "precision", shown, f"expected one of {', '.join(allowed)}")
        object.__setattr__(self, "precision", Precision(value))


STAGES: dict[StageKind, type] = {
    cls.kind: cls
    for cls in (
        PruneStage, ChannelsStage, ClusterStage, QatStage, LowRankStage, DistillStage, ConvertStage
    )
}  # fmt: skip
AnyStage = (
    PruneStage | ChannelsStage | ClusterStage | QatStage | LowRankStage | DistillStage
    | ConvertStage
)  # fmt: skip


def _enum(cls: type[StrEnum], stage: str, name: str, value: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)  # type: ignore[attr-defined]
        raise _fail(stage, name, value, f"expected one of {allowed}") from None
