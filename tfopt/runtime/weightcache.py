"""XNNPACK's weight cache for CompiledModel: a model's weights packed once, not once per signature.

Without it, XNNPACK packs every constant weight again for each signature it runs (each prefill
bucket, verify and decode get their own copy), so an LM export of N signatures holds about N
packed copies plus the file's pages: a float32 GPT-2-124M-shaped export peaked at 2452 MB
against a 498 MB file. With the cache, packs are keyed by (packing, weight buffer, bias buffer),
so signatures that share a buffer (the LM export dedupes them) share one pack, and XNNPACK
pages the file's original weights out once packed (BENCHMARKS.md section 19).

The cache is a file next to the model, `<model>.<id>.xnnpack_cache`, built in a child process
the first time (so the decoding process never holds the builder's scratch), then memory-mapped
by every later load; `<id>` follows the model file (size, mtime, head and tail bytes), because
XNNPACK itself does not check that a cache belongs to the model (a cache of a re-converted model
would silently give old weights). Where the folder is not writable, or the build fails, the
in-process `:memory` cache still packs once per process. Only the Interpreter API cannot take a
weight cache in ai-edge-litert 2.3 (its default XNNPACK delegate is built with none), so this
is for CompiledModel only.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
from typing import Any

import numpy as np

IN_MEMORY = ":memory"  # tflite/delegates/xnnpack/weight_cache.h kInMemoryCachePath
SUFFIX = ".xnnpack_cache"
_EDGE = 1 << 16  # bytes hashed at each end of the model file


def cache_path(model_path: str) -> str:
    """The cache file of this model file: next to it, named after its identity."""
    stat = os.stat(model_path)
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(model_path, "rb") as f:
        digest.update(f.read(_EDGE))
        f.seek(max(0, stat.st_size - _EDGE))
        digest.update(f.read(_EDGE))
    return f"{model_path}.{digest.hexdigest()[:12]}{SUFFIX}"


def weight_cache(model_path: str, threads: int = 1, build: bool = True) -> str:
    """The `xnnpack_weight_cache_path` for CompiledModel's `CpuOptions`: the model's complete
    cache file (built first in a child process when `build` and it is missing), else
    `:memory`."""
    path = cache_path(model_path)
    if os.path.isfile(path):
        return path
    if not build or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return IN_MEMORY
    return path if build_cache(model_path, path, threads) else IN_MEMORY


def build_cache(model_path: str, path: str, threads: int = 1) -> bool:
    """Pack the model's weights into `path` in a child process (its own memory), then publish
    the file atomically; stale caches of the same model path are removed. False on failure."""
    partial = f"{path}.{os.getpid()}.partial"
    code = "import sys; from tfopt.runtime.weightcache import pack; pack(*sys.argv[1:4])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, model_path, partial, str(threads)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode != 0 or not os.path.isfile(partial):
            return False
        for stale in glob.glob(f"{glob.escape(model_path)}.{'[0-9a-f]' * 12}{SUFFIX}"):
            os.remove(stale)
        os.replace(partial, path)
        return True
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def pack(model_path: str, path: str, threads: str = "1") -> None:
    """Run every signature once on zeros with the weight cache at `path` (XNNPACK packs at a
    signature's first run): the body of the child process of `build_cache`."""
    model = compiled_model(model_path, int(threads), path)
    for key, names in model.get_signature_list().items():
        details = model.get_input_tensor_details(key)
        inputs = {n: model.create_input_buffer_by_name(key, n) for n in names["inputs"]}
        for name, buffer in inputs.items():
            buffer.write(zeros(details[name]))
        outputs = {n: model.create_output_buffer_by_name(key, n) for n in names["outputs"]}
        model.run_by_name(key, inputs, outputs)


def zeros(detail: dict[str, Any]) -> np.ndarray:
    return np.zeros(int(np.prod(detail["shape"])), np.dtype(detail["dtype"]))


def compiled_model(model_path: str, threads: int, cache: str) -> Any:
    """A CompiledModel on LiteRT's CPU accelerator with XNNPACK's weight cache at `cache`."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.options import CpuOptions, Options

    cpu = CpuOptions(num_threads=threads, xnnpack_weight_cache_path=cache)
    return CompiledModel.from_file(model_path, options=Options(cpu_options=cpu))
