"""Ray and Ray Tune: the cluster, the timer of each target, and a phase of trials with its ledger.

- Ray starts in-process on this machine by default; `address` joins a running cluster
  (`ray start --head` / `ray start --address`), whose nodes then take trials.
- Conversions run in parallel, one CPU each, wherever Ray places them. Timing does not: each
  target has one `Timer` actor (one call at a time), pinned to the driver's node, so no two
  measurements on a target overlap and every file lands on the driver's machine.
- The ledger (`STATE/trials/KEY.json`, written by the driver as each trial ends) is what a
  resumed search trusts: a variant with a ledger entry is never run again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfopt.errors import InputError, TfoptError, first_line, option
from tfopt.evaluation import Runtime, Timing
from tfopt.fsutil import write_text
from tfopt.tuning.space import Variant


class ClusterError(TfoptError):
    """The Ray cluster cannot be reached or joined."""


def _reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"{option('ray_address')} {address}: write HOST:PORT, e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {first_line(exc)}") from None


def connect(address: str | None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start Ray here, or join the cluster at `address`; the cluster's nodes and CPUs."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # tfopt handles Ctrl-C itself
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        _reachable(address)
        token = Path.home() / ".ray" / "auth_token"
        if "RAY_AUTH_MODE" not in os.environ and (token.exists() or "RAY_AUTH_TOKEN" in os.environ):
            os.environ["RAY_AUTH_MODE"] = "token"  # a cluster started with token auth (Ray's default)
    try:
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, ...
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ClusterError(f"cannot start or join {where}: {first_line(exc)}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "address": address or "local",
        "nodes": len(nodes),
        "cpus": int(sum(n["Resources"].get("CPU", 0) for n in nodes)),
        "driver_node": ray.get_runtime_context().get_node_id(),
    }


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class _Timer:
    """Times files on one target, one measurement at a time (a Ray actor on the driver's node)."""

    def __init__(self, files: str, target: str, target_options: dict[str, Any],
                 min_seconds: float, warmup: int) -> None:  # fmt: skip
        self.files = Path(files)
        self.target, self.target_options = target, target_options
        self.min_seconds, self.warmup = min_seconds, warmup

    def measure(self, key: str, flat: bytes, runtimes: tuple[Runtime, ...]) -> list[Timing]:
        """Keep the file as FILES/KEY.tflite and time it under each runtime (a failure is that
        timing's one-line `error`, never an exception)."""
        from tfopt.fsutil import atomic_path
        from tfopt.targets import make_target, opened
        from tfopt.timing import bench

        path = self.files / f"{key}.tflite"
        with atomic_path(path) as tmp:
            tmp.write_bytes(flat)
        out = []
        with opened(make_target(self.target, **self.target_options)) as where:
            for rt in runtimes:
                try:
                    result = bench(path, rt.settings(self.min_seconds, warmup=self.warmup), where)
                    out.append(Timing.from_result(rt, result.results[0]))
                except TfoptError as exc:
                    out.append(Timing(rt, None, error=exc.message))
                except Exception as exc:  # noqa: BLE001 - a target that breaks mid-search
                    out.append(Timing(rt, None, error=f"{type(exc).__name__}: {first_line(exc)}"))
        return out


def timer(state: Path, driver_node: str, target: str, target_options: dict[str, Any],
          min_seconds: float, warmup: int) -> Any:  # fmt: skip
    """The target's timer: a Ray actor pinned to the driver's node, taking no CPU slot."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    (state / "files").mkdir(parents=True, exist_ok=True)
    actor = ray.remote(num_cpus=0, max_concurrency=1)(_Timer)
    return actor.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(driver_node, soft=False)
    ).remote(str(state / "files"), target, target_options, min_seconds, warmup)


class Ledger:
    """Finished trials on disk, one JSON file per variant key, and a log of trial starts."""

    def __init__(self, state: Path) -> None:
        self.dir = state / "trials"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = state / "starts.jsonl"

    def get(self, key: str, retried_too: bool = False) -> dict[str, Any] | None:
        """A finished trial's row; one whose worker died (a lost node) counts only with
        `retried_too`, so a resumed search runs it again."""
        path = self.dir / f"{key}.json"
        row = json.loads(path.read_text()) if path.is_file() else None
        return row if row is not None and (retried_too or not row.get("retry")) else None

    def put(self, row: dict[str, Any]) -> None:
        write_text(self.dir / f"{row['key']}.json", json.dumps(row, indent=1, default=float))

    def started(self, key: str) -> None:
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "time": time.time(), "pid": os.getpid()}) + "\n")

    def rows(self) -> list[dict[str, Any]]:
        rows = [json.loads(p.read_text()) for p in sorted(self.dir.glob("*.json"))]
        return [r for r in rows if not r.get("retry")]


@dataclass(frozen=True)
class Phases:
    """Where a search's phases run: its `Job` in Ray's object store, the target's timer, the
    ledger in the state folder, and who hears of each trial as it ends."""

    job_ref: Any
    timer: Any
    ledger: Ledger
    state: Path
    on_row: Callable[[dict[str, Any]], None] | None = None


def run_phase(name: str, variants: list[Variant], phases: Phases, float_model: bytes | None = None,
              time_budget_s: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run the variants that have no ledger entry as one Ray Tune experiment; every row back."""
    from ray import tune

    from tfopt.tuning.trial import run

    ledger = phases.ledger
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for v in variants:
        done = ledger.get(v.key)
        if done is not None:
            rows[v.key] = {**done, "resumed": True}
        elif v.key not in {t.key for t in todo}:
            todo.append(v)
    if todo:
        trainable = tune.with_resources(
            tune.with_parameters(run, job=phases.job_ref, timer=phases.timer,
                                 float_model=float_model),  # fmt: skip
            {"cpu": 1},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"variant": tune.grid_search([v.to_dict() for v in todo])},
            tune_config=tune.TuneConfig(reuse_actors=True, time_budget_s=time_budget_s),
            run_config=tune.RunConfig(
                storage_path=str((phases.state / "ray").resolve()), name=name, verbose=0,
                callbacks=[_recorder(name, ledger, phases.on_row)],
            ),
        )
        tuner.fit()
    for v in todo:
        got = ledger.get(v.key, retried_too=True)
        if got is not None:
            rows[v.key] = got
    return [rows[v.key] for v in variants if v.key in rows]


def _recorder(name: str, ledger: Ledger, on_row: Callable[[dict[str, Any]], None] | None) -> Any:
    """A Ray Tune callback: the driver writes the ledger as each trial ends."""
    from ray import tune

    def record(row: dict[str, Any]) -> None:
        ledger.put(row)
        if on_row:
            on_row(row)

    class _Record(tune.Callback):
        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            ledger.started(Variant.from_dict(trial.config["variant"]).key)

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            row = dict(trial.last_result["row"])
            row["phase"] = row["variant"].get("phase") or name
            record(row)

        def on_trial_error(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            v = Variant.from_dict(trial.config["variant"])
            record({"key": v.key, "variant": v.to_dict(), "status": "failed", "phase": name,
                    "retry": True,  # not the variant's fault: --resume runs it again
                    "reason": f"the trial's worker or node died: {_why(trial)}"})  # fmt: skip

    return _Record()


def _why(trial: Any) -> str:
    try:
        error = trial.get_pickled_error()
    except Exception:  # noqa: BLE001 - the error file itself may be gone with the node
        error = None
    return first_line(error) if error is not None else "no error recorded"


