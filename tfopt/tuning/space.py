"""The search space: how a file is made (`Variant`) and how it is run (`Runtime`), as data.

A trial is one `Variant`: a `.tflite` file built, measured for quality once and timed under each
`Runtime` that applies. Keys are content hashes of the settings, so a resumed search recognises a
finished trial whatever order it comes in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from tfopt.conversion.request import ConvertRequest, Quantizer
from tfopt.core import AEQ_PRECISIONS, CALIBRATED, CONVERTER_PRECISIONS, Precision
from tfopt.errors import InputError, option
from tfopt.evaluation import Runtime
from tfopt.recipes import ConvertStage, Recipe, load_recipe, shipped

CALIBRATION_SIZES = (100, 400)


def _key(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Variant:
    """How one `.tflite` is made: an optional shipped recipe's training stages, then a conversion."""

    precision: Precision
    quantizer: Quantizer = Quantizer.CONVERTER
    num_calibration: int = 100
    keep_float: tuple[str, ...] = ()
    recipe: str | None = None  # a shipped recipe whose training stages run first
    float_groups: int = 0  # how many sensitivity-ranked op groups `keep_float` holds
    phase: str = field(default="base", compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: the enums once, here (a bad one is one line)
        set_(self, "precision", _enum(Precision, self.precision, "precision"))
        set_(self, "quantizer", _enum(Quantizer, self.quantizer, "quantizer"))
        set_(self, "keep_float", tuple(self.keep_float))

    @property
    def key(self) -> str:
        return _key(self._doc())

    def _doc(self) -> dict[str, Any]:
        """The settings as plain JSON values (the key hashes these, without the phase)."""
        doc = asdict(self)
        doc.pop("phase")
        return {**doc, "precision": self.precision.value, "quantizer": self.quantizer.value}

    @property
    def label(self) -> str:
        name = self.precision.value
        name = name if self.quantizer is Quantizer.CONVERTER else f"aeq-{name}"
        if self.precision in CALIBRATED:
            name += f"/c{self.num_calibration}"
        if self.float_groups:
            name += f"+float{self.float_groups}"
        return f"{self.recipe}:{name}" if self.recipe else name

    def recipe_object(self, runtime: Runtime | None) -> Recipe:
        """The recipe `tfopt optimize` reproduces this variant with (and the runtime it won on)."""
        stages: tuple[Any, ...] = load_recipe(self.recipe).stages[:-1] if self.recipe else ()
        convert = ConvertStage(
            precision=self.precision.value,
            num_calibration=self.num_calibration,
            quantizer=self.quantizer.value,
            keep_float=self.keep_float,
        )
        return Recipe(
            f"tuned-{self.label.replace(':', '-').replace('/', '-').replace('+', '-')}",
            (*stages, convert),
            f"found by tfopt tune: {self.label}" + (f", run with {runtime.label}" if runtime else ""),
            runtime=runtime.to_dict() if runtime else None,
        )

    def convert_request(self, calibration: Any, **options: Any) -> ConvertRequest:
        """The `ConvertRequest` of this variant's conversion (`options`: the search's own
        `ConvertRequest` fields, e.g. seq_len, unsafe, imports)."""
        return ConvertRequest(precision=self.precision, quantizer=self.quantizer,
                              num_calibration=self.num_calibration, keep_float=self.keep_float,
                              calibration=calibration, **options)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**self._doc(), "phase": self.phase, "keep_float": list(self.keep_float),
                "key": self.key, "label": self.label}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Variant:
        """The variant of a `to_dict` document (a trial's config or a row in tune.json)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k == "keep_float" else v for k, v in doc.items() if k in names})


# LiteRT CPU options that change the numbers, not just the speed: tune judges every file through
# the default CPU kernels, so a set with these would be judged on numbers it does not produce.
NUMERIC_CPU_OPTIONS = ("force_fp16",)


@dataclass(frozen=True)
class Space:
    """Which dimensions the search covers (each on by default where it applies)."""

    precisions: tuple[str, ...] = tuple(p.value for p in CONVERTER_PRECISIONS)
    aeq_precisions: tuple[str, ...] = tuple(p.value for p in AEQ_PRECISIONS)
    calibration_sizes: tuple[int, ...] = CALIBRATION_SIZES
    recipes: tuple[str, ...] = ()  # shipped recipes, when the data has a training split
    selective_float: bool = True
    threads: tuple[int, ...] = (1, 2)
    xnnpack: tuple[bool, ...] = (True, False)
    # XNNPACK flags and the LiteRT CPU API, each set beside the default one (XNNPACK on only).
    cpu_option_sets: tuple[tuple[str, ...], ...] = (("api=compiled",),)
    accelerators: tuple[str, ...] = ("cpu",)

    def __post_init__(self) -> None:
        for p in self.precisions:
            if p not in {c.value for c in CONVERTER_PRECISIONS}:
                raise InputError(f"{option('precisions')} {p}: the converter makes "
                                 f"{', '.join(c.value for c in CONVERTER_PRECISIONS)}")
        for p in self.aeq_precisions:
            if p not in {c.value for c in AEQ_PRECISIONS}:
                raise InputError(f"{option('aeq_precisions')} {p}: the LiteRT quantizer makes "
                                 f"{', '.join(c.value for c in AEQ_PRECISIONS)}")
        unknown = [r for r in self.recipes if r not in shipped()]
        if unknown:
            raise InputError(f"{option('recipes')} {unknown[0]}: shipped recipes are {', '.join(shipped())}")
        if not self.threads or min(self.threads) < 1:
            raise InputError(f"{option('threads')}: give one or more positive thread counts, e.g. 1,2")
        if not self.calibration_sizes or any(c < 1 for c in self.calibration_sizes):
            raise InputError(f"{option('calibration_sizes')}: give one or more positive sample counts")
        if not self.xnnpack:
            raise InputError("xnnpack: give True, False or both")
        bad = [a for a in self.accelerators if a not in ("cpu", "gpu")]
        if not self.accelerators or bad:
            raise InputError(f"{option('accelerators')} {','.join(bad) or 'none'}: tune times on cpu and gpu")
        from tfopt.runtime.cpuopts import parse_cpu_options

        for options in self.cpu_option_sets:
            try:
                parsed = parse_cpu_options(options)
            except ValueError as exc:  # the runtime's message names its own flag: tune's instead
                message = str(exc).replace("--cpu-option", option("cpu_option_sets"))
                raise InputError(message) from None
            numeric = [k for k in NUMERIC_CPU_OPTIONS if parsed.get(k)]
            if numeric:
                raise InputError(f"{option('cpu_option_sets')} {','.join(options)}: {numeric[0]} changes the "
                                 "numbers, and tune judges files through the default kernels; "
                                 "time it with tfopt bench instead")  # fmt: skip

    def runtimes(self) -> list[Runtime]:
        """Every runtime setting, the default one (first thread count, XNNPACK on) first."""
        cpu = "cpu" in self.accelerators
        out = [Runtime(t, x, "cpu") for x in self.xnnpack for t in self.threads if cpu]
        out += [Runtime(t, True, "cpu", tuple(o)) for o in self.cpu_option_sets if o
                for t in self.threads if cpu and True in self.xnnpack]  # fmt: skip
        out += [Runtime(1, True, a) for a in self.accelerators if a != "cpu"]
        return out


def _enum(cls: Any, value: Any, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise InputError(f"{option(what)} '{value}': choose from "
                         f"{', '.join(m.value for m in cls)}") from None  # fmt: skip


def calibration_sizes(space: Space, available: int) -> tuple[int, ...]:
    sizes = sorted({min(c, available) for c in space.calibration_sizes})
    return tuple(sizes)


def base_variants(space: Space, available_calibration: int) -> list[Variant]:
    """Phase 1: every converter precision (calibrated ones at each calibration size)."""
    sizes = calibration_sizes(space, available_calibration)
    out = []
    for p in space.precisions:
        for c in sizes if p in CALIBRATED else (100,):
            out.append(Variant(p, "converter", c, phase="convert"))
    return out


def quantizer_variants(space: Space, available_calibration: int) -> list[Variant]:
    """Phase 2: the LiteRT quantizer's schemes on the float file."""
    sizes = calibration_sizes(space, available_calibration)
    return [
        Variant(p, "aeq", c, phase="quantizer")
        for p in space.aeq_precisions
        for c in (sizes if p in CALIBRATED else (100,))
    ]


def recipe_variants(space: Space) -> list[Variant]:
    """Phase 1b: each shipped recipe's training stages, converted as the recipe says."""
    out = []
    for name in space.recipes:
        final = load_recipe(name).stages[-1]
        assert isinstance(final, ConvertStage)
        out.append(Variant(final.precision, final.quantizer, final.num_calibration,
                           final.keep_float, recipe=name, phase="recipe"))
    return out


def ladder(variant: Variant, groups: list[list[str]]) -> list[Variant]:
    """Phase 3: `variant` with the 1, 2, 4, ... most sensitive op groups kept in float."""
    out, k = [], 1
    while k < len(groups):
        regexes = tuple(r for g in groups[:k] for r in g)
        out.append(replace(variant, quantizer="aeq", keep_float=regexes, float_groups=k,
                           phase="selective-float"))
        k *= 2
    return out
