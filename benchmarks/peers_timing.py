"""The child processes of `peers.py` (no TensorFlow loaded there): each variant on its runtime
(`Runner`), its held-out quality (`measure_quality`) and interleaved timing rounds (`time_variants`)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from peers_variants import Variant, log

SCRIPT = Path(__file__).resolve().parent / "peers.py"
ACCURACY_POINTS = 1.0  # cnn gate: within 1 point of the float Keras model
MIN_COSINE = 0.99  # minilm gate: mean cosine to the float Keras model
SENTENCES = 40  # minilm-own: the real sentences every round runs, each at its own length

def _match(names: list[str], keys: list[str]) -> dict[str, str]:
    """Runtime input name -> data key ('serving_default_token_ids:0' -> 'token_ids')."""
    return {n: next(k for k in sorted(keys, key=len, reverse=True) if k in n) for n in names}


class Runner:
    """One variant loaded on its runtime with `threads` threads: set inputs, invoke, read.

    Inputs are bound once before timing, as tfopt's own harness does: ONNX Runtime through an
    IO binding, OpenVINO through its infer request, LiteRT through set_tensor.
    """

    def __init__(self, v: Variant, threads: int) -> None:
        self.kind = v.kind
        self.litert: Any = None
        if v.kind == "tflite" and v.cpu:  # LiteRT's CompiledModel with XNNPACK flags
            from tfopt.runtime.cpuopts import parse_cpu_options
            from tfopt.runtime.gpu import CompiledRunner

            self.litert = CompiledRunner(v.path, "cpu", threads, parse_cpu_options(v.cpu))
        elif v.kind == "tflite":
            from tfopt.runtime import feeding

            self.interp = feeding.make_interpreter(v.path, threads)  # XNNPACK on
            self.inputs, self.outputs = feeding.io_details(self.interp)
        elif v.kind == "ort":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            self.session = ort.InferenceSession(v.path, so, providers=["CPUExecutionProvider"])
            self.binding = self.session.io_binding()
        else:
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                      "NUM_STREAMS": 1}  # fmt: skip
            self.compiled = core.compile_model(core.read_model(v.path), "CPU", config)
            self.request = self.compiled.create_infer_request()

    def set(self, sample: dict[str, np.ndarray]) -> None:
        if self.litert is not None:
            names = list(self.litert.inputs)
            self.litert.feed({n: sample[k] for n, k in _match(names, list(sample)).items()})
        elif self.kind == "tflite":
            from tfopt.runtime import feeding

            feeding.feed(self.interp, self.inputs, sample)
        elif self.kind == "ort":
            names = [i.name for i in self.session.get_inputs()]
            self.binding.clear_binding_inputs()
            self.binding.clear_binding_outputs()
            for n, k in _match(names, list(sample)).items():
                self.binding.bind_cpu_input(n, np.ascontiguousarray(sample[k]))
            for o in self.session.get_outputs():
                self.binding.bind_output(o.name)
        else:
            import openvino as ov

            names = {p.get_any_name(): p for p in self.compiled.inputs}
            for n, k in _match(list(names), list(sample)).items():
                self.request.set_tensor(names[n], ov.Tensor(np.ascontiguousarray(sample[k])))

    def invoke(self) -> None:
        if self.litert is not None:
            self.litert.invoke()
        elif self.kind == "tflite":
            self.interp.invoke()
        elif self.kind == "ort":
            self.session.run_with_iobinding(self.binding)
        else:
            self.request.infer()

    def read(self) -> list[np.ndarray]:
        if self.litert is not None:
            return list(self.litert.read().values())
        if self.kind == "tflite":
            from tfopt.runtime import feeding

            return [feeding.dequantize(self.interp.get_tensor(d["index"]), d)
                    for d in self.outputs.values()]  # fmt: skip
        if self.kind == "ort":
            return [np.asarray(o) for o in self.binding.copy_outputs_to_cpu()]
        # .data is a view of the request's buffer, which the next infer overwrites
        return [np.array(self.request.get_tensor(p).data) for p in self.compiled.outputs]


def measure_quality(v: Variant, ev: dict[str, np.ndarray], info: dict[str, Any]) -> None:
    """Held-out accuracy (cnn) or embedding cosine to the Keras model (minilm), batch 1."""
    from tfopt.validate import embedding_agreement, sentence_embeddings

    runner = Runner(v, 2)
    keys = [k for k in ev if k not in ("labels", "reference")]
    if info.get("own_length"):  # each sentence at its own length: pool each one by itself
        embs = []
        for sample in own_length_samples(ev, len(ev[keys[0]])):
            runner.set(sample)
            runner.invoke()
            seq = next(o for o in runner.read() if o.ndim == 3)
            embs.append(sentence_embeddings({"sequence_output": seq}, sample["padding_mask"], "mean"))
        v.quality = embedding_agreement(ev["reference"], np.concatenate(embs))
        v.passes = v.quality["mean_cosine"] >= MIN_COSINE and not v.tfopt_refused
        return
    firsts = []
    for i in range(len(ev[keys[0]])):
        runner.set({k: ev[k][i : i + 1] for k in keys})
        runner.invoke()
        outs = runner.read()
        firsts.append(next(o for o in outs if o.ndim == (2 if "labels" in ev else 3)))
    got = np.concatenate(firsts)
    if "labels" in ev:  # a classifier (cnn, cnn224): held-out accuracy
        acc = float(np.mean(got.argmax(1) == ev["labels"]) * 100)
        v.quality = {"accuracy": acc}
        v.passes = acc >= info["reference_accuracy"] - ACCURACY_POINTS
    else:
        emb = sentence_embeddings({"sequence_output": got}, ev["padding_mask"], "mean")
        v.quality = embedding_agreement(ev["reference"], emb)
        v.passes = v.quality["mean_cosine"] >= MIN_COSINE
    v.passes = v.passes and not v.tfopt_refused


def own_length_samples(ev: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """The first `n` sentences, each cut to its own length (BERT pads at the end)."""
    keys = [k for k in ev if k not in ("labels", "reference")]
    lengths = ev["padding_mask"][:n].sum(axis=1)
    return [{k: np.ascontiguousarray(ev[k][i : i + 1, :n_i]) for k in keys}
            for i, n_i in enumerate(lengths)]  # fmt: skip


def key(v: Variant | dict[str, Any]) -> str:
    d = asdict(v) if isinstance(v, Variant) else v
    return f"{d['family']}/{d['label']}"


def time_variants(
    variants: list[Variant], ev: dict[str, np.ndarray], threads: int, rounds: int, runs: int,
    own: bool = False,
) -> dict[str, dict[str, Any]]:
    """Interleaved rounds at `threads`; per variant the round medians and their median (ms).
    `own`: a round runs SENTENCES sentences at their own lengths (set + invoke timed, as the
    resize is part of the cost) and its figure is their mean."""
    keys = [k for k in ev if k not in ("labels", "reference")]
    sample = {k: ev[k][:1] for k in keys}
    sentences = own_length_samples(ev, SENTENCES) if own else []
    runners = {}
    for v in variants:
        try:
            runners[key(v)] = r = Runner(v, threads)
            r.set(sample)
            for _ in range(max(5, runs // 2)):
                r.invoke()
            for s in sentences:  # own lengths: every shape seen once before timing
                r.set(s)
                r.invoke()
        except Exception as exc:  # noqa: BLE001 - a runtime refusing a model is a result
            log(f"{v.model} {v.label}: cannot run at {threads} threads: {exc}")
            runners.pop(key(v), None)
    medians: dict[str, list[float]] = {label: [] for label in runners}
    order = list(runners)
    for r in range(rounds):
        for label in order[r % len(order) :] + order[: r % len(order)]:
            runner, times = runners[label], []
            if own:
                for s in sentences * runs:
                    t0 = time.perf_counter_ns()
                    runner.set(s)
                    runner.invoke()
                    times.append((time.perf_counter_ns() - t0) / 1e6)
                medians[label].append(statistics.mean(times))
                continue
            runner.invoke()
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                runner.invoke()
                times.append((time.perf_counter_ns() - t0) / 1e6)
            medians[label].append(statistics.median(times))
    return {
        label: {"ms": round(statistics.median(m), 3), "round_medians_ms": [round(x, 3) for x in m]}
        for label, m in medians.items()
    }


def child(args: argparse.Namespace) -> None:
    """`--child quality|time`: load the variants of one model and print JSON on stdout."""
    spec = json.loads(Path(args.spec).read_text())
    variants = [Variant(**v) for v in spec["variants"]]
    with np.load(spec["info"]["eval"]) as z:
        ev = {k: z[k] for k in z.files}
    if args.child == "quality":
        for v in variants:
            started = time.perf_counter()
            try:
                measure_quality(v, ev, spec["info"])
            except Exception as exc:  # noqa: BLE001 - a runtime refusing a model is a result
                v.error = v.error or f"fails: {str(exc).splitlines()[0][:200]}"
            log(f"{v.model} {v.family} {v.label}: {v.quality} passes={v.passes} "
                f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
        print(json.dumps([asdict(v) for v in variants]))
    else:
        threads = int(args.threads)
        own = bool(spec["info"].get("own_length"))
        print(json.dumps(time_variants(variants, ev, threads, args.rounds, spec["runs"], own)))


def run_child(mode: str, spec: Path, threads: int = 2, rounds: int = 0) -> Any:
    """This script in a fresh process (no TensorFlow there; one process per thread count)."""
    cmd = [sys.executable, str(SCRIPT), "--child", mode, "--spec", str(spec),
           "--threads", str(threads), "--rounds", str(rounds)]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None and proc.stdout is not None
    tail: list[str] = []
    for line in proc.stderr:  # progress lines pass through as they come; the rest is kept
        if line.startswith("[peers"):
            sys.stderr.write(line)
        tail = (tail + [line])[-40:]
    stdout = proc.stdout.read()
    if proc.wait() != 0:
        sys.exit(f"child {mode} failed ({proc.returncode}):\n{''.join(tail)}")
    return json.loads(stdout.strip().splitlines()[-1])

