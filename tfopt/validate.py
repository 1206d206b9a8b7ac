"""Validate stage: run a reference and a converted `.tflite` on the same data and compare.

Outputs are paired by name (or by shape when the two sides name them differently) and compared
with a small registry of metrics. int8 I/O is (de)quantized with each tensor's scale and zero
point, so an int8 model is compared in real values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tfopt import judging
from tfopt.data import Dataset, load_data
from tfopt.errors import InputError, ValidationError
from tfopt.loading import LoadedModel, SourceKind, load
from tfopt.metrics import (  # noqa: F401 - re-exported: validate's public names stay importable
    METRICS,
    Metric,
    OutputDiff,
    cosine,
    embedding_agreement,
    max_abs,
    mean_abs,
    sentence_embeddings,
    sqnr_db,
    varies,
)
from tfopt.runtime import feeding


@dataclass(frozen=True)
class CompareResult:
    """Output-by-output differences plus classifier agreement and accuracy when they apply.

    `top1_agreement` is the worst class-score output's (each output's own is in `outputs`);
    `accuracy` is that of the one output the labels belong to. `input_saturation` is, per
    quantized input of the candidate, the fraction of fed values outside its range; `warnings`
    names what makes the numbers misleading (saturated inputs, labels that fit no output)."""

    samples: int
    outputs: list[OutputDiff]
    top1_agreement: float | None
    accuracy: dict[str, float] | None
    failures: list[str] = field(default_factory=list)
    candidate_machine: dict[str, Any] | None = None  # compare --target: where the candidate ran
    input_saturation: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        if d["candidate_machine"] is None:
            del d["candidate_machine"]
        return d


def run_tflite(model_path: str, data: Dataset, threads: int = 2) -> dict[str, np.ndarray]:
    """Run a `.tflite` sample by sample; outputs in real values, keyed by output name."""
    interpreter = feeding.make_interpreter(model_path, threads)
    try:
        return feeding.run_samples(interpreter, data.x)
    except KeyError as exc:
        raise ValidationError(f"{model_path}: {exc.args[0]}") from None


def _output_names(model: Any, count: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == count else [f"output_{i}" for i in range(count)]


def run_reference(loaded: LoadedModel, data: Dataset, batch: int = 64) -> dict[str, np.ndarray]:
    """Run a Keras model, SavedModel signature or `.tflite` file on `data`.

    Batches follow the model's signature: where it fixes the batch size (a SavedModel exported
    for batch 1, common on the edge), the data goes in that many samples at a time.
    """
    if loaded.kind is SourceKind.TFLITE:
        assert loaded.path is not None
        return run_tflite(str(loaded.path), data)
    fixed = {
        s.shape[0]
        for s in loaded.inputs
        if loaded.kind is SourceKind.SAVED_MODEL and s.shape and s.shape[0] is not None
    }
    if fixed:
        batch = min(fixed)
    model = loaded.model
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(data), batch):
        x = {k: v[start : start + batch] for k, v in data.x.items()}
        if fixed and len(next(iter(x.values()))) != batch:
            break  # a last, partial batch cannot go through a fixed-batch signature
        if loaded.kind is SourceKind.SAVED_MODEL:
            out = model(**x)
        else:
            out = model(loaded.call_args(x), training=False)
        if not isinstance(out, dict):
            seq = list(out) if isinstance(out, (list, tuple)) else [out]
            out = dict(zip(_output_names(model, len(seq)), seq, strict=True))
        for name, value in out.items():
            chunks.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(v) for name, v in chunks.items()}


def pair_outputs(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """Pair outputs by name; else one-to-one; else by unique shape."""
    if set(ref) == set(cand):
        return [(n, n) for n in ref]
    if len(ref) == len(cand) == 1:
        return [(next(iter(ref)), next(iter(cand)))]
    pairs = []
    for r, rv in ref.items():
        same = [c for c, cv in cand.items() if cv.shape == rv.shape]
        if len(same) != 1:
            raise ValidationError(
                f"cannot pair reference output '{r}' {rv.shape} with a candidate output "
                f"({', '.join(f'{c} {v.shape}' for c, v in cand.items())})"
            )
        pairs.append((r, same[0]))
    return pairs


class GateError(InputError):
    """A requested threshold cannot be computed for this model; `gate` is the threshold's
    parameter name, so the CLI can name its option."""

    def __init__(self, message: str, gate: str) -> None:
        super().__init__(message)
        self.gate = gate


def compare_outputs(
    ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], y: np.ndarray | None = None
) -> CompareResult:
    """Metrics per paired output; top-1 agreement for each class-score output (`class_scores`)
    and accuracy for the one the labels `y` belong to."""
    pairs = pair_outputs(ref, cand)
    for r, c in pairs:
        if ref[r].shape != cand[c].shape:
            raise ValidationError(
                f"output '{r}': the reference gives shape {ref[r].shape}, the .tflite "
                f"{cand[c].shape}"
            )
    scored = [r for r, _ in pairs if judging.class_scores(r, ref[r], len(pairs) == 1)]
    warnings: list[str] = []
    labelled = judging.labelled(y, scored, ref, warnings)
    diffs = []
    for r, c in pairs:
        a, b = ref[r], cand[c]
        values = {k: fn(a, b) for k, fn in METRICS.items()}
        top1 = accuracy = None
        if r in scored:
            ia, ib = a.argmax(1), b.argmax(1)
            top1 = float(np.mean(ia == ib))
            if r == labelled:
                assert y is not None
                labels = judging.labels_of(y)
                accuracy = {
                    "reference": float(np.mean(ia == labels)),
                    "candidate": float(np.mean(ib == labels)),
                }
        diffs.append(OutputDiff(r, c, list(a.shape), **values, reference_varies=varies(a),
                                top1_agreement=top1, accuracy=accuracy))  # fmt: skip
    tops = [d.top1_agreement for d in diffs if d.top1_agreement is not None]
    accuracy = next((d.accuracy for d in diffs if d.accuracy is not None), None)
    samples = len(next(iter(ref.values())))
    return CompareResult(samples, diffs, min(tops) if tops else None, accuracy, warnings=warnings)


def _no_class_scores(outputs: list[tuple[str, tuple[int, ...]]]) -> GateError:
    shown = ", ".join(f"'{n}' ({', '.join(['samples', *map(str, s[1:])])})" for n, s in outputs)
    several = (
        " (among several outputs, class scores are rows of probabilities summing to 1, or an "
        "output named *logits*)"
        if len(outputs) > 1
        else ""
    )
    return GateError(
        f"top-1 agreement needs an output of class scores (samples, classes); this model "
        f"gives {shown}{several}",
        "min_top1",
    )


def with_thresholds(
    result: CompareResult,
    min_sqnr_db: float | None = None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
) -> CompareResult:
    """Return `result` with a failure line for every threshold it misses, on every output it
    applies to.

    Raises:
        GateError: `min_top1` is given but no output gives class scores.
    """
    failures = []
    for d in result.outputs:
        why = (
            ""
            if d.reference_varies
            else " (the reference gives the same output for every sample: untrained or random "
            "weights? Check a trained model or real data; this says nothing about the conversion)"
        )
        if min_sqnr_db is not None and d.sqnr_db < min_sqnr_db:
            failures.append(f"output '{d.name}': SQNR {d.sqnr_db:.1f} dB < {min_sqnr_db} dB{why}")
        if min_cosine is not None and d.cosine < min_cosine:
            failures.append(f"output '{d.name}': cosine {d.cosine:.5f} < {min_cosine}{why}")
    if min_top1 is not None:
        judged = [d for d in result.outputs if d.top1_agreement is not None]
        if not judged:
            raise _no_class_scores([(d.name, tuple(d.shape)) for d in result.outputs])
        failures += [
            f"output '{d.name}': top-1 agreement {d.top1_agreement:.4f} < {min_top1}"
            for d in judged
            if d.top1_agreement is not None and d.top1_agreement < min_top1
        ]
    return replace(result, failures=failures)


def with_saturation(result: CompareResult, model_path: str, data: Dataset) -> CompareResult:
    """`result` with the candidate `.tflite`'s input saturation on `data` and its warnings."""
    fractions, warnings = judging.input_saturation(model_path, data.x)
    return replace(result, input_saturation=fractions, warnings=[*warnings, *result.warnings])


@dataclass(frozen=True)
class Gates:
    """The thresholds a user asks of a comparison; a miss becomes a failure (None: not asked)."""

    min_sqnr_db: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None


def compare(
    reference: LoadedModel,
    candidate_path: str,
    data: Dataset,
    gates: Gates | None = None,
    target: Any = None,
) -> CompareResult:
    """Run both models on `data` and compare; the gates turn misses into `failures`. With a
    `tfopt.targets.Target`, the candidate runs there (an ARM board's kernels, over ssh)."""
    gates = gates or Gates()
    ref = run_reference(reference, data)
    machine = None
    if target is None:
        cand = run_tflite(candidate_path, data)
    else:
        from tfopt.targets import opened

        with opened(target):
            try:
                cand, machine = target.outputs(Path(candidate_path), data.x, 2, timeout=1800)
            except KeyError as exc:
                raise ValidationError(f"{candidate_path}: {exc.args[0]}") from None
    result = with_saturation(compare_outputs(ref, cand, data.y), candidate_path, data)
    result = with_thresholds(result, gates.min_sqnr_db, gates.min_cosine, gates.min_top1)
    if machine is not None:  # where the candidate ran
        result = replace(result, candidate_machine={"target": target.name, **machine})
    return result


def compare_files(
    reference: str,
    candidate: str,
    data: str,
    max_samples: int = 1000,
    gates: Gates | None = None,
    unsafe: bool = False,
    imports: tuple[str, ...] = (),
    target: Any = None,
) -> CompareResult:
    """Load a reference model, a candidate `.tflite` and data from files, then `compare` (on
    `target` when given: a `tfopt.targets.Target`)."""
    if max_samples < 1:
        raise InputError("max_samples must be at least 1")
    cand = load(candidate)
    if cand.kind is not SourceKind.TFLITE:
        raise InputError(f"CANDIDATE must be a .tflite file: {candidate}")
    ref = load(reference, unsafe=unsafe, imports=imports)
    assert cand.path is not None
    gates = gates or Gates()
    if gates.min_top1 is not None:  # refused before any run when no output can hold class scores
        _, outs = feeding.io_details(feeding.make_interpreter(str(cand.path)))
        shapes = [(n, tuple(int(x) for x in d["shape"])) for n, d in outs.items()]
        if not any(len(s) == 2 and s[1] > 1 for _, s in shapes):
            raise _no_class_scores(shapes)
    dataset = load_data(data, cand.inputs, limit=max_samples)
    return compare(ref, str(cand.path), dataset, gates, target)


def compare_embeddings(
    reference: str,
    candidate: str,
    data: str,
    max_samples: int = 1000,
    pooling: str = "mean",
    unsafe: bool = False,
    imports: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Embedding mode of compare: sentence embeddings of both models on the same token data."""
    cand = load(candidate)
    if cand.kind is not SourceKind.TFLITE:
        raise InputError(f"CANDIDATE must be a .tflite file: {candidate}")
    dataset = load_data(data, cand.inputs, limit=max_samples)
    mask = dataset.x.get("padding_mask")
    ref_out = run_reference(load(reference, unsafe=unsafe, imports=imports), dataset)
    assert cand.path is not None
    cand_out = run_tflite(str(cand.path), dataset)
    result = embedding_agreement(
        sentence_embeddings(ref_out, mask, pooling), sentence_embeddings(cand_out, mask, pooling)
    )
    return {"samples": len(dataset), "pooling": pooling, **result}
