"""Prompt lookup on a model that edits the passage it is given (issue 24, item 4).

    python benchmarks/lm_lookup_copy.py [--out lm-lookup-out] [--minutes 12] [--rounds 5] [--quick]

benchmarks/lm_lookup.py measured prompt lookup on the fortunes GPT-2, which never copies the
passage: its gain came from the model repeating itself. Here a small keras-hub GPT-2 (byte tokens,
vocabulary 256, `build` of examples/gpt2_fortunes/train.py) is trained with `fit` on an edit task
built from real fortunes text: each row is `passage + CUE + edited passage`, two tasks mixed half
and half:

- edit, cue "\\n=> ": the passage with every word "the" written "THE";
- copy, cue "\\n== ": the passage as it is.

Trained once into `--out/copy_gpt2.keras` (`model.save`; reused when present) by this script in
a child process (`--train-only`), so the timings never share a process with TensorFlow; exported
by `tfopt convert --lm --max-length 256` (float32, int8 dynamic). On held-out passages (fortunes
entries never trained on, 120-144 bytes, so prompt + 100 new tokens + a verify window fit 256),
the prompt is `passage + cue` and 100 greedy tokens follow: decode tokens/s without lookup and with
K = 3, 5, 7 at 1 thread (lm_lookup.lookup_rounds: interleaved rounds, medians, the output asserted
identical to the run without lookup), acceptance, the output copied from the prompt, and whether
the model did the task (its output against the edited passage); a fresh prompt (the first 40 bytes
of an entry, no passage) is the control.

Writes benchmarks/results/lm_lookup_copy.{json,md}.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples/gpt2_fortunes"))

import lm_lookup  # noqa: E402

from tfopt.report import markdown_table  # noqa: E402

MAX_LENGTH = 256
NEW_TOKENS = 100
HELD_OUT = 400  # entries kept out of training (the last ones of a seeded permutation)
VARIANTS = {"float32": "float32", "int8 dynamic": "dynamic"}
TASKS = {
    "edit: passage + '\\n=> ', 'the' -> 'THE'": ("\n=> ", lambda p: re.sub(r"\bthe\b", "THE", p)),
    "copy: passage + '\\n== '": ("\n== ", lambda p: p),
}


def split_entries() -> tuple[list[str], list[str]]:
    """Real fortunes entries (all files, one line each, ASCII), shuffled with a fixed seed:
    (training entries, held-out entries); no held-out text is among the training entries."""
    import train

    found = [e for e in train.corpus().decode("utf-8").split("\n") if e.isascii() and len(e) > 20]
    found = [found[i] for i in np.random.default_rng(0).permutation(len(found))]
    held = found[-HELD_OUT:]
    seen = set(held)
    return [e for e in found[:-HELD_OUT] if e not in seen], held


def passage(pool: list[str], start: int, low: int, high: int) -> str | None:
    """Entries from `start` joined by spaces until `low` bytes, cut at a space within `high`."""
    text, i = "", start
    while len(text) < low and i < len(pool):
        text = (text + " " + pool[i]).strip()
        i += 1
    if len(text) > high:
        text = text[: text.rfind(" ", 0, high + 1)]
    return text if low <= len(text) <= high else None


def rows(pool: list[str], rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """`count` training rows of MAX_LENGTH + 1 tokens (task mixed half and half, passages of 40-170
    bytes, truncated at the window), right-padded with weight 0."""
    n = MAX_LENGTH + 1
    ids, weight = np.zeros((count, n), np.int32), np.zeros((count, n), np.float32)
    tasks = list(TASKS.values())
    for r in range(count):
        text = None
        while text is None:
            low = int(rng.integers(40, 160))
            text = passage(pool, int(rng.integers(0, len(pool))), low, low + 10)
        cue, edit = tasks[r % len(tasks)]
        seq = list((text + cue + edit(text)).encode())[:n]
        ids[r, : len(seq)], weight[r, : len(seq)] = seq, 1.0
    return {"ids": ids, "weight": weight}


def fit_inputs(batch: dict[str, np.ndarray], answer_only: bool = False) -> tuple[dict, Any, Any]:
    """(x, y, sample_weight) for GPT2CausalLM.fit/evaluate; with `answer_only` the weight
    covers only the tokens after the cue (the part the task decides)."""
    ids, weight = batch["ids"], batch["weight"][:, 1:].copy()
    if answer_only:
        for r, row in enumerate(ids):
            cut = bytes(row.astype(np.uint8)).find(b"\n=")
            weight[r, : cut + 3] = 0.0
    x = {"token_ids": ids[:, :-1], "padding_mask": batch["weight"][:, :-1] > 0}
    return x, ids[:, 1:], weight


def train_model(path: Path, minutes: float, layers: int, hidden: int, batch_size: int) -> None:
    """Train with `fit` (or go on training the saved model) in chunks of 50 steps for `minutes`; evaluate each chunk's loss on the
    answers of held-out rows (nats/byte); `model.save(path)`."""
    import train

    pool, held = split_entries()
    info_path = path.with_suffix(".train.json")
    if path.exists():  # resume: the saved model keeps its optimizer state
        from tfopt import keras_worlds

        keras_worlds.keras_hub()
        keras = keras_worlds.module(keras_worlds.World.KERAS3)
        model = keras.saving.load_model(path)
        before = json.loads(info_path.read_text())
        log, minutes_before = before["log"], before["minutes"]
    else:
        model = train.build(layers, hidden, max_len=MAX_LENGTH)
        log, minutes_before = [], 0.0
    rng = np.random.default_rng(1 + len(log))
    check = fit_inputs(rows(held, np.random.default_rng(2), 64), answer_only=True)
    started, steps = time.perf_counter(), log[-1]["steps"] if log else 0
    offset = log[-1]["s"] if log else 0
    while time.perf_counter() - started < 60 * minutes:
        x, y, w = fit_inputs(rows(pool, rng, 50 * batch_size))
        history = model.fit(x, y, sample_weight=w, batch_size=batch_size, epochs=1, verbose=0)
        steps += 50
        ev = model.evaluate(check[0], check[1], sample_weight=check[2], verbose=0, return_dict=True)
        answer = {f"held_out_answer_{k}": float(v) for k, v in ev.items()}
        log.append({"steps": steps, "s": offset + round(time.perf_counter() - started),
                    "loss": float(history.history["loss"][-1]), **answer})  # fmt: skip
        print(f"{steps} steps, {log[-1]['s']} s, loss {log[-1]['loss']:.3f}, held-out answers: "
              f"{answer}", file=sys.stderr, flush=True)  # fmt: skip
    model.save(path)
    info = {"layers": layers, "hidden": hidden, "batch_size": batch_size,
            "minutes": minutes_before + minutes, "parameters": model.count_params(), "log": log}  # fmt: skip
    info_path.write_text(json.dumps(info, indent=2))


def trained(out: Path, args: argparse.Namespace) -> Path:
    path = out / "copy_gpt2.keras"
    if not path.exists():
        subprocess.run([sys.executable, __file__, "--train-only", "--out", str(out), "--minutes",
                        str(args.minutes), "--layers", str(args.layers), "--hidden",
                        str(args.hidden), "--batch-size", str(args.batch_size)], check=True)  # fmt: skip
    return path


def exports(model: Path, out: Path, variants: list[str]) -> dict[str, Path]:
    """Per variant the .tflite by `tfopt convert --lm` (reused when present)."""
    files = {}
    for label in variants:
        path = out / f"copy_gpt2_{VARIANTS[label]}_{MAX_LENGTH}.tflite"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "tfopt", "convert", str(model), "--lm",
                            "--max-length", str(MAX_LENGTH), "--precision", VARIANTS[label],
                            "-o", str(path)], check=True)  # fmt: skip
        files[label] = path
    return files


def prompts_and_targets(held: list[str], count: int) -> tuple[dict[str, list[str]], dict]:
    """Per task `count` held-out passages of 120-144 bytes with its cue, and what the task asks
    for (the first NEW_TOKENS bytes of the edited passage); the fresh control prompts."""
    passages, i = [], 0
    while len(passages) < count:
        text = passage(held, i, 120, 144)
        i += 1
        if text and not any(text[:40] in p for p in passages):
            passages.append(text)
    prompts = {task: [p + cue for p in passages] for task, (cue, _) in TASKS.items()}
    targets = {task: [edit(p)[:NEW_TOKENS] for p in passages] for task, (_, edit) in TASKS.items()}
    prompts[lm_lookup.FRESH] = [e[:40] for e in held[-count:]]
    return prompts, targets


def task_score(samples: list[str], targets: list[str]) -> dict[str, float]:
    """Exact answers; the mean similarity of answer and target (difflib ratio, so a repeated
    or skipped word costs only its bytes); the words "THE" written against those asked for."""
    pairs = list(zip(samples, targets, strict=True))
    return {"exact": sum(s == t for s, t in pairs), "of": len(pairs),
            "similarity": statistics.mean(difflib.SequenceMatcher(None, s, t).ratio() for s, t in pairs),
            "THE_written": sum(len(re.findall(r"\bTHE\b", s)) for s, _ in pairs),
            "THE_asked": sum(len(re.findall(r"\bTHE\b", t)) for _, t in pairs)}  # fmt: skip


def verdict(lookup: dict[str, dict], scores: dict[str, dict]) -> tuple[str, bool]:
    """>= 1.5x decode tokens/s with identical output on the edit-task prompts, counted (as in
    lm_lookup.goal) only where the output copies from the passage (half its tokens or more) and
    beyond what the fresh control gains from the model's own repetition."""
    edit = next(iter(TASKS))
    parts, met = [], True
    for label, res in lookup.items():
        d, control = res[edit], res[lm_lookup.FRESH]
        k, m = max(((k, m) for k, m in d["per_k"].items() if k), key=lambda km: km[1]["speedup"])
        score = scores[label][edit]
        met = met and d["copied_fraction"] >= 0.5 and m["speedup"] >= 1.5
        met = met and m["speedup"] > control["per_k"][k]["speedup"]
        parts.append(f"{label}: best {m['speedup']:.2f}x at K={k} with "
                     f"{100 * d['copied_fraction']:.0f}% of the output copied from the passage "
                     f"(fresh control {control['per_k'][k]['speedup']:.2f}x); the task itself: "
                     f"{score['exact']}/{score['of']} answers exact, similarity "
                     f"{100 * score['similarity']:.0f}%, {score['THE_written']} of "
                     f"{score['THE_asked']} 'THE' edits written")  # fmt: skip
    head = "met" if met else "NOT met"
    return (f"Goal (>= 1.5x decode tokens/s on prompts to edit a given passage, same greedy "
            f"output, the output copied from the passage): {head}; " + "; ".join(parts)), met  # fmt: skip


def report(doc: dict, args: argparse.Namespace) -> str:
    text = ""
    for label, res in doc["lookup"].items():
        text += (f"\nPrompt lookup, {label}, 1 thread, {NEW_TOKENS} new tokens, {args.prompts} "
                 f"prompts per kind, medians of {args.rounds} rounds:\n\n{lm_lookup.lookup_table(res)}\n")  # fmt: skip
        rows_ = [[task, f"{s['exact']}/{s['of']}", f"{100 * s['similarity']:.1f}%",
                  f"{s['THE_written']}/{s['THE_asked']}"]
                 for task, s in doc["task_scores"][label].items()]  # fmt: skip
        text += "\nDoes the model do the task:\n\n" + markdown_table(
            ["task", "answers exact (100 bytes)", "similarity to the target",
             "'THE' written / in the target"], rows_) + "\n"  # fmt: skip
    samples = [[task, repr(doc["prompts"][task][0][-30:]), repr(d["samples"][0][:70])]
               for task, d in doc["lookup"]["float32"].items()]  # fmt: skip
    text += (f"\n{doc['goal']}\n\nFirst prompt of each kind (float32):\n\n"
             + markdown_table(["prompt", "prompt ends with", "greedy output"], samples)
             + f"\n\nmodel: {doc['model']}\nmachine: {doc['machine']}\n")  # fmt: skip
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lm-lookup-out", help="cache of the model and its files")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time (first run)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ks", default="3,5,7")
    parser.add_argument("--prompts", type=int, default=8, help="held-out prompts per kind")
    parser.add_argument("--variants", default="float32,int8 dynamic")
    parser.add_argument("--quick", action="store_true", help="1 round, 3 prompts (smoke test)")
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        train_model(out / "copy_gpt2.keras", args.minutes, args.layers, args.hidden, args.batch_size)
        return
    args.ks, args.new_tokens = [int(k) for k in args.ks.split(",")], NEW_TOKENS
    if args.quick:
        args.rounds, args.prompts = 1, 3
    model = trained(out, args)
    files = exports(model, out, args.variants.split(","))
    prompts, targets = prompts_and_targets(split_entries()[1], args.prompts)
    lookup = {label: lm_lookup.lookup_rounds(path, prompts, args) for label, path in files.items()}
    scores = {label: {task: task_score(res[task]["samples"], targets[task]) for task in TASKS}
              for label, res in lookup.items()}  # fmt: skip
    line, met = verdict(lookup, scores)
    info = model.with_suffix(".train.json")
    train_info = json.loads(info.read_text()) if info.exists() else {}
    doc = {"machine": lm_lookup.machine(), "max_length": MAX_LENGTH, "goal": line, "met": met,
           "model": {k: v for k, v in train_info.items() if k != "log"} | {
               "final": (train_info.get("log") or [{}])[-1]},
           "train_log": train_info.get("log"), "lookup": lookup, "task_scores": scores,
           "prompts": prompts, "targets": targets, "rounds": args.rounds}  # fmt: skip
    text = report(doc, args)
    results = out if args.quick else Path(args.results)
    (results / "lm_lookup_copy.json").write_text(json.dumps(doc, indent=2, default=str))
    (results / "lm_lookup_copy.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
