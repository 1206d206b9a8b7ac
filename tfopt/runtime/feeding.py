"""Feeding a `.tflite` model: the Interpreter, its inputs and outputs by name, (de)quantization,
and the values fed to it (a data file's first sample, or realistic synthetic ones).

The one copy of "how to feed and read a .tflite": the device runtime uses it, and so do
`tfopt.validate` and the loaders on the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def make_interpreter(
    model_path: str, threads: int = 1, xnnpack: bool = True, options: dict[str, bool] | None = None
) -> Any:
    """Build a LiteRT Interpreter with threads and XNNPACK set explicitly; `options` are further
    Interpreter keyword arguments (see `cpuopts.interpreter_kwargs`)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_path=model_path,
        num_threads=threads,
        experimental_op_resolver_type=resolver,
        **(options or {}),
    )
    try:
        interpreter.allocate_tensors()
    except RuntimeError:
        # A free length too short for the model at its default size 1 (a convolution longer
        # than that): `feed` allocates once the inputs are resized to the sample's length.
        if not any(any(free_dims(d)[1:]) for d in interpreter.get_input_details()):
            raise
        interpreter.tfopt_unallocated = True
    return interpreter


def short_name(tensor_name: str) -> str:
    """'serving_default_token_ids:0' -> 'token_ids' (signature-less tensor names)."""
    name = tensor_name.split(":")[0]
    if name.startswith("serving_default_"):
        name = name[len("serving_default_") :]
    return name


def io_details(interpreter: Any) -> tuple[dict[str, dict], dict[str, dict]]:
    """Inputs and outputs keyed by user-facing name (signature names if there is one signature)."""
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        return runner.get_input_details(), runner.get_output_details()
    ins = {short_name(d["name"]): d for d in interpreter.get_input_details()}
    outs = {short_name(d["name"]): d for d in interpreter.get_output_details()}
    return ins, outs


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Cast real values to the tensor's dtype, applying its scale and zero point when quantized."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(dtype, np.integer) and np.issubdtype(values.dtype, np.floating):
        info = np.iinfo(dtype)
        q = np.round(values / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Real values of a tensor: (q - zero_point) * scale when quantized, else float32."""
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(values.dtype, np.integer):
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32) if values.dtype != np.float32 else values


def free_dims(detail: dict) -> list[bool]:
    """Which dimensions of a tensor the model leaves free (-1 in its shape signature)."""
    signature = detail.get("shape_signature")
    if signature is None or len(signature) != len(detail["shape"]):
        return [False] * len(detail["shape"])
    return [int(s) == -1 for s in signature]


def has_free_length(inputs: dict[str, dict]) -> bool:
    """Whether any input leaves a non-batch dimension free (`convert --dynamic-length`)."""
    return any(any(free_dims(d)[1:]) for d in inputs.values())


def fits(detail: dict, shape: tuple[int, ...]) -> bool:
    """Whether an array of `shape` can be fed, resizing the tensor's free dimensions."""
    return len(shape) == len(detail["shape"]) and all(
        free or int(d) == w
        for d, w, free in zip(detail["shape"], shape, free_dims(detail), strict=True)
    )


def synthetic_input(name: str, detail: dict, rng: np.random.Generator) -> np.ndarray:
    """Realistic random values for one input: floats in [0, 1), small non-negative ids for ints.

    Integer inputs are usually indices (token ids, segment ids, masks), so negative or large values
    would make gathers fail; masks and segment/type ids stay in {0, 1}.
    """
    shape = [int(s) for s in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    scale, _ = detail["quantization"]
    if scale:  # a quantized (int8 I/O) tensor: realistic float values, then quantized
        return quantize(rng.random(shape, dtype=np.float32), detail)
    lowered = name.lower()
    high = 2 if any(k in lowered for k in ("mask", "segment", "type")) else 100
    return rng.integers(0, high, shape).astype(dtype)


def feed(interpreter: Any, inputs: dict[str, dict], sample: dict[str, np.ndarray]) -> None:
    """Set every input tensor from a {name: array} sample (batch dimension included). Inputs
    with free dimensions (`convert --dynamic-length`) are first resized to the sample's shape;
    `inputs` then records the new shapes."""
    resized = False
    for name, detail in inputs.items():
        shape = tuple(np.shape(sample[name]))
        if shape != tuple(int(d) for d in detail["shape"]) and fits(detail, shape):
            interpreter.resize_tensor_input(detail["index"], list(shape), strict=True)
            detail["shape"] = np.array(shape, dtype=np.int32)
            resized = True
    if resized or getattr(interpreter, "tfopt_unallocated", False):
        try:
            interpreter.allocate_tensors()
        except RuntimeError as exc:
            shapes = ", ".join(f"{n} {list(np.shape(sample[n]))}" for n in inputs)
            why = next((ln for ln in str(exc).splitlines() if ln.strip()), "allocation failed")
            raise ValueError(f"the model cannot run at input shape {shapes}: {why}") from None
        interpreter.tfopt_unallocated = False
    for name, detail in inputs.items():
        interpreter.set_tensor(detail["index"], quantize(np.asarray(sample[name]), detail))


def load_sample(data_path: str | None, inputs: dict[str, dict], seed: int) -> dict[str, np.ndarray]:
    """First sample of a .npz/.npy file (by input name, or `x`), else synthetic values."""
    rng = np.random.default_rng(seed)
    if not data_path:
        return {name: synthetic_input(name, d, rng) for name, d in inputs.items()}
    if data_path.endswith(".npy"):
        arrays = {"x": np.load(data_path, allow_pickle=False)}
    else:
        with np.load(data_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    sample = {}
    for name, detail in inputs.items():
        key = name if name in arrays else "x" if len(inputs) == 1 and "x" in arrays else None
        if key is None:
            raise ValueError(f"data has no array named '{name}'")
        first = arrays[key][:1]
        # free dimensions (`convert --dynamic-length`) take the data's own length
        sample[name] = (
            first if fits(detail, first.shape) else first.reshape([int(s) for s in detail["shape"]])
        )
    return sample


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    """`NAME=1,500,4` per input (the host's `bench --input-shape`/`--seq-len`, resolved)."""
    shapes = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise ValueError(f"--input-shape '{value}': expected NAME=comma-separated sizes") from None
        if not name or any(d < 1 for d in shapes[name]):
            raise ValueError(f"--input-shape '{value}': expected NAME=positive sizes")
    return shapes


def synthetic_file(model_path: str, shapes: dict[str, list[int]], seed: int, folder: str) -> str:
    """A .npz of one synthetic sample at `shapes` (other inputs at their own shape), fed then
    like a `--data` file: the timed run and the profile see the same sample at the same shape."""
    import os

    inputs, _ = io_details(make_interpreter(model_path))
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise ValueError(f"the model has no input {', '.join(unknown)} (it has {', '.join(inputs)})")
    for name, shape in shapes.items():
        if not fits(inputs[name], tuple(shape)):
            raise ValueError(
                f"input '{name}' cannot take shape {shape}: its shape is "
                f"{[int(d) for d in inputs[name]['shape_signature']]} (-1 = free)"
            )
    rng = np.random.default_rng(seed)
    sample = {
        name: synthetic_input(name, {**d, "shape": shapes.get(name, d["shape"])}, rng)
        for name, d in inputs.items()
    }
    path = os.path.join(folder, "sample.npz")
    np.savez(path, **sample)
    return path


def run_samples(interpreter: Any, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run every sample of `x` ({input name: array with a leading sample axis}) one by one;
    outputs in real values (dequantized), keyed by output name, samples stacked."""
    inputs, outputs = io_details(interpreter)
    missing = [n for n in inputs if n not in x]
    if missing:
        raise KeyError(f"the model expects inputs {sorted(inputs)}, the data holds {sorted(x)}")
    count = len(next(iter(x.values()))) if x else 0
    results: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    for i in range(count):
        # Every sample starts from zero state: a converted Keras LSTM keeps its state tensors
        # as variables that would otherwise carry one sample's state into the next.
        interpreter.reset_all_variables()
        feed(interpreter, inputs, {name: x[name][i : i + 1] for name in inputs})
        interpreter.invoke()
        for name, detail in outputs.items():
            results[name].append(dequantize(interpreter.get_tensor(detail["index"]), detail))
    return {name: np.concatenate(v) for name, v in results.items()}


def write_outputs(
    model_path: str, data_path: str, out_path: str, threads: int, xnnpack: bool
) -> dict:
    """Run every sample of a .npz (arrays named after the inputs) and save the outputs as .npz
    (`o0`, `o1`, ... in the order of the returned `outputs` names): numerics on the device."""
    with np.load(data_path, allow_pickle=False) as z:
        x = {k: z[k] for k in z.files}
    results = run_samples(make_interpreter(model_path, threads, xnnpack), x)
    names = list(results)
    np.savez(out_path, **{f"o{i}": results[n] for i, n in enumerate(names)})
    return {"outputs": names, "samples": len(next(iter(x.values()))) if x else 0}


def real_range(detail: dict) -> tuple[float, float] | None:
    """The real values a quantized (int8/uint8/int16) tensor can represent, or None when it is
    not quantized: (qmin - zero_point) * scale .. (qmax - zero_point) * scale."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not scale or dtype not in (np.int8, np.uint8, np.int16):
        return None
    info = np.iinfo(dtype)
    return (info.min - zero_point) * scale, (info.max - zero_point) * scale


def saturation(values: np.ndarray, detail: dict) -> float:
    """The fraction of real `values` that `quantize` clips for this tensor (0 when the tensor is
    not quantized or the values are not real numbers)."""
    values = np.asarray(values)
    floating = np.issubdtype(values.dtype, np.floating)
    if real_range(detail) is None or not floating or not values.size:
        return 0.0
    scale, zero_point = detail["quantization"]
    info = np.iinfo(np.dtype(detail["dtype"]))
    q = np.round(values.astype(np.float64) / scale + zero_point)
    return float(np.mean((q < info.min) | (q > info.max)))
