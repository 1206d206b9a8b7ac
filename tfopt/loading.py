"""Load stage: any supported source becomes a `LoadedModel` with named input specs.

Sources: in-memory tf_keras or Keras 3 models (keras-hub included), `.keras` and `.h5` files (the
file's own metadata decides which Keras world loads it), SavedModel folders and `.tflite` files.
Keras files load in safe mode: a Lambda layer is refused unless `unsafe=True`. Other formats
(ONNX, PyTorch, TensorFlow checkpoints, GraphDefs) are refused naming the format and the route
to one tfopt reads (`tfopt.foreign`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.core import (  # noqa: F401 - re-exported: the load stage's types
    TFLITE_MAGIC,
    CallStructure,
    InputShapes,
    LoadedModel,
    SourceKind,
    TensorSpec,
    arrange,
)
from tfopt.errors import InputError, ModelLoadError, first_line, option
from tfopt.foreign import describe
from tfopt.fsutil import existing
from tfopt.userimports import import_user_code, load_error


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", dtype)
    return np.dtype(str(name)).name


def _tensor_name(tensor: Any) -> str:
    return str(getattr(tensor, "name", "input")).split(":")[0]


def _functional_input(model: Any) -> Any:
    """`model.input`, also for a Keras 3 Sequential loaded from a file (whose `.input` raises)."""
    for candidate in (model, getattr(model, "_functional", None)):
        if candidate is None:
            continue
        try:
            return candidate.input
        except (AttributeError, ValueError):
            continue
    return None


def _declared_shapes(model: Any) -> list[tuple[int | None, ...]] | dict[str, Any] | None:
    """Input shapes a model declares without symbolic inputs: its build config (what `fit` and
    `build` record, what `.keras` files store), else its first layer's recorded build shape."""
    config = None
    try:
        config = (model.get_build_config() or {}).get("input_shape")
    except Exception:  # noqa: BLE001 - a model that was never built
        config = None
    if config is None:
        layers = getattr(model, "layers", None) or []
        recorded = getattr(layers[0], "_build_shapes_dict", None) if layers else None
        if recorded and len(recorded) == 1:
            config = next(iter(recorded.values()))
    if config is None:
        return None
    if isinstance(config, dict):
        return {str(k): tuple(v) for k, v in config.items()}
    config = list(config)
    if config and all(isinstance(d, (int, type(None))) for d in config):
        return [tuple(config)]
    return [tuple(s) for s in config]


def _batch_free(shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
    """A recorded build shape holds the batch size of the data it saw: free it."""
    return (None, *shape[1:]) if shape else shape


def _keras_inputs(
    model: Any, input_shapes: InputShapes | None = None
) -> tuple[tuple[TensorSpec, ...], CallStructure]:
    tensors = None
    try:
        tensors = model.inputs
    except (AttributeError, ValueError):
        tensors = None
    if tensors:
        names = list(getattr(model, "input_names", None) or [_tensor_name(t) for t in tensors])
        # The batch size is free: a Keras 3 Sequential built by `fit` records the batch it first
        # saw (e.g. 32) as if it were fixed, and tfopt converts at batch 1 anyway.
        specs = tuple(
            TensorSpec(str(n).split(":")[0], _batch_free(tuple(t.shape)), _dtype_name(t.dtype))
            for n, t in zip(names, tensors, strict=True)
        )
        structure = _functional_input(model)
        by_tensor = {id(t): s.name for t, s in zip(tensors, specs, strict=True)}
        by_name = {_tensor_name(t): s.name for t, s in zip(tensors, specs, strict=True)}

        def name_of(t: Any) -> str:
            return by_tensor.get(id(t)) or by_name.get(_tensor_name(t), _tensor_name(t))

        if isinstance(structure, dict):
            call: CallStructure = {str(k): name_of(t) for k, t in structure.items()}
        elif isinstance(structure, (list, tuple)):
            call = tuple(name_of(t) for t in structure)
        else:
            call = None
        specs = _override(specs, input_shapes)
        return specs, call
    declared = _declared_shapes(model)
    if input_shapes is not None:
        declared = (
            {k: tuple(v) for k, v in input_shapes.items()}
            if isinstance(input_shapes, dict)
            else [tuple(input_shapes)]
        )
    if declared is None:
        raise ModelLoadError(
            f"cannot tell the input shape of {type(model).__name__} (a subclassed model that "
            f"was never built?): pass {option('input_shapes')}, e.g. 1,224,224,3"
        )
    if isinstance(declared, dict):
        specs = tuple(TensorSpec(k, _batch_free(tuple(v)), "float32") for k, v in declared.items())
        return specs, {s.name: s.name for s in specs}
    if len(declared) == 1:
        return (TensorSpec("input", _batch_free(declared[0]), "float32"),), None
    specs = tuple(
        TensorSpec(f"input_{i}", _batch_free(s), "float32") for i, s in enumerate(declared)
    )
    return specs, tuple(s.name for s in specs)


def _override(specs: tuple[TensorSpec, ...], shapes: InputShapes | None) -> tuple[TensorSpec, ...]:
    """Apply --input-shape to known inputs (free dimensions only may change)."""
    if shapes is None:
        return specs
    wanted = (
        shapes if isinstance(shapes, dict) else {specs[0].name: shapes} if len(specs) == 1 else None
    )
    if wanted is None:
        raise InputError(
            f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}): "
            f"give {option('input_shapes')} NAME=DIMS for each"
        )
    unknown = sorted(set(wanted) - {s.name for s in specs})
    if unknown:
        raise InputError(
            f"{option('input_shapes')} names unknown inputs {', '.join(unknown)} "
            f"(the model has {', '.join(s.name for s in specs)})"
        )
    out = []
    for s in specs:
        shape = tuple(wanted.get(s.name, s.shape))
        if len(shape) != len(s.shape) or any(
            d is not None and w is not None and d != w for d, w in zip(s.shape, shape, strict=True)
        ):
            raise InputError(
                f"{option('input_shapes')} {shape} does not fit input '{s.name}' of shape {s.shape}"
            )
        out.append(TensorSpec(s.name, shape, s.dtype))
    return tuple(out)


def parse_input_shapes(values: tuple[str, ...] | list[str]) -> InputShapes | None:
    """`1,224,224,3` (the single input) or `NAME=1,128` (repeatable); `?` or `None` is free."""
    if not values:
        return None
    named: dict[str, tuple[int | None, ...]] = {}
    single: tuple[int | None, ...] | None = None
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(
                None if d.strip() in ("?", "None", "none", "") else int(d) for d in dims.split(",")
            )
        except ValueError:
            raise InputError(
                f"{option('input_shapes')} '{value}': expected comma-separated sizes such as 1,224,224,3"
            ) from None
        if any(d is not None and d < 1 for d in shape):
            raise InputError(f"{option('input_shapes')} '{value}': sizes must be positive")
        if name:
            named[name] = shape
        elif single is None and not named:
            single = shape
        else:
            raise InputError(f"give one {option('input_shapes')}, or NAME=DIMS for each input")
    if single is not None and named:
        raise InputError(f"give one {option('input_shapes')}, or NAME=DIMS for each input")
    return named or single


def from_keras(
    model: Any, path: Path | None = None, input_shapes: InputShapes | None = None
) -> LoadedModel:
    """Wrap an in-memory Keras model of either world."""
    world = keras_worlds.world_of_model(model)
    if world is None:
        raise ModelLoadError(f"{type(model).__name__} is not a Keras model")
    kind = SourceKind.TF_KERAS if world is keras_worlds.World.TF_KERAS else SourceKind.KERAS3
    specs, structure = _keras_inputs(model, input_shapes)
    return LoadedModel(kind, model, specs, path, structure)


def _load_saved_model(path: Path, input_shapes: InputShapes | None = None) -> LoadedModel:
    tf = keras_worlds.tf()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a broken folder
        raise ModelLoadError(f"cannot load SavedModel {path}: {first_line(exc)}") from exc
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelLoadError(f"SavedModel {path} has no 'serving_default' signature")
    fn = signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    inputs = tuple(
        TensorSpec(name, tuple(spec.shape.as_list()), spec.dtype.name)
        for name, spec in sorted(specs.items())
    )
    # Keep the loaded object alive: the signature function references its variables.
    fn._tfopt_owner = loaded  # noqa: SLF001
    return LoadedModel(SourceKind.SAVED_MODEL, fn, _override(inputs, input_shapes), path)


# Build the interpreter as the caller will (XNNPACK on) and run it once on zeros.
_PROBE = (
    "import sys\nfrom tfopt.runtime.feeding import make_interpreter\n"
    "try:\n    make_interpreter(sys.argv[1]).invoke()\nexcept Exception:\n    pass\n"
)


def probe_tflite(
    path: str | os.PathLike[str], timeout: float = 120.0, script: str = _PROBE
) -> None:
    """Load and run a `.tflite` file once in a child process before this process touches it
    (`script`, run with the path as its argument: by default the Interpreter's load and run).

    LiteRT trusts the flatbuffer: a damaged one can crash its native code (XNNPACK segfaults
    while preparing some corrupted int8 graphs), which would kill tfopt with no message. Errors
    that LiteRT raises as exceptions are left to the caller's own load.

    Raises:
        ModelLoadError: the runtime crashed or hung on the file.
    """
    import signal
    import subprocess
    import sys

    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            f"{path}: LiteRT did not finish loading it in {timeout:.0f} s"
        ) from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ModelLoadError(f"{path} is a broken .tflite file: LiteRT crashed on it ({name})")


def refuse_foreign(path: Path) -> None:
    """Raise the one line naming a format tfopt does not convert (ONNX, PyTorch, a TensorFlow
    checkpoint or GraphDef...) and the route to one it does; nothing for anything else."""
    line = describe(path)
    if line is not None:
        raise ModelLoadError(line)


def _load_tflite(path: Path) -> LoadedModel:
    from tfopt.runtime.feeding import free_dims, io_details, make_interpreter

    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != TFLITE_MAGIC:
        refuse_foreign(path)
        raise ModelLoadError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    probe_tflite(path)
    try:
        interpreter = make_interpreter(str(path))
        inputs, _ = io_details(interpreter)
    except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError
        if "unresolved custom op" in str(exc):
            raise ModelLoadError(
                f"{path} cannot run here: LiteRT has no kernel for its custom op "
                f"({first_line(exc)}); `tfopt inspect` still describes it"
            ) from exc
        raise ModelLoadError(f"{path} is a broken .tflite file: {first_line(exc)}") from exc
    # A quantized (int8 I/O) input takes real values: the runtime quantizes them.
    # a free (sequence) dimension (`convert --dynamic-length`) stays free: data of any length fits
    specs = tuple(
        TensorSpec(
            n,
            tuple(None if i and free else int(s)
                  for i, (s, free) in enumerate(zip(d["shape"], free_dims(d), strict=True))),  # fmt: skip
            "float32" if d["quantization"][0] else np.dtype(d["dtype"]).name,
        )
        for n, d in inputs.items()
    )
    return LoadedModel(SourceKind.TFLITE, None, specs, path)


def load(
    source: str | os.PathLike[str] | Any,
    unsafe: bool = False,
    imports: tuple[str, ...] | list[str] = (),
    input_shapes: InputShapes | None = None,
) -> LoadedModel:
    """Load a model file or folder, or wrap an in-memory Keras model.

    Args:
        unsafe: allow Lambda layers and `imports` (both run code from outside the model's weights).
        imports: modules or `.py` files to import first (custom layers and models).
        input_shapes: input shapes for a model that does not record them (`parse_input_shapes`).

    Raises:
        InputError: the path does not exist or has an unknown extension.
        ModelLoadError: the file is not a model, is broken, or holds a Lambda layer in safe mode.
    """
    custom = import_user_code(imports, unsafe)
    if not isinstance(source, (str, os.PathLike)):
        return from_keras(source, input_shapes=input_shapes)
    if not Path(source).exists():
        refuse_foreign(Path(source))  # a checkpoint's prefix: it names no file, only shards
    path = existing(source, "model")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return _load_saved_model(path, input_shapes)
        if (path / "config.json").exists():  # a keras-hub / Hugging Face preset folder
            try:
                model = keras_worlds.load_preset(path)
            except Exception as exc:  # noqa: BLE001 - keras-hub raises many types
                raise ModelLoadError(f"cannot load preset {path}: {first_line(exc)}") from exc
            return from_keras(model, path, input_shapes)
        refuse_foreign(path)
        raise InputError(
            f"{path} is a folder but neither a SavedModel (saved_model.pb) nor a preset (config.json)"
        )
    if path.suffix == ".tflite":
        return _load_tflite(path)
    if path.suffix not in (".keras", ".h5", ".hdf5") or path.name.endswith(".weights.h5"):
        refuse_foreign(path)
        raise InputError(
            f"{path}: unknown model format '{path.suffix}' "
            "(expected .keras, .h5, .tflite or a SavedModel folder)"
        )
    try:
        version, config = keras_worlds.file_metadata(path)
    except ValueError as exc:
        raise ModelLoadError(f"{path} is not a Keras model file: {exc}") from exc
    if not unsafe and "Lambda" in keras_worlds.layer_classes(config):
        raise ModelLoadError(
            f"{path} holds a Lambda layer, which runs arbitrary Python code when loaded; "
            f"refused in safe mode (pass {option('unsafe')} if you trust this file)"
        )
    world = keras_worlds.world_of_version(version)
    try:
        model = keras_worlds.load_file(path, world, config, unsafe, custom)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise load_error(path, exc, custom) from exc
    return from_keras(model, path, input_shapes)
