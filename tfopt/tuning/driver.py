"""`tune()`: a search from request to written files — set up, search on Ray, finish."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from tfopt.errors import option
from tfopt.tuning.prepare import Setup
from tfopt.tuning.request import TuneRequest
from tfopt.tuning.result import Interrupted, TuneResult
from tfopt.tuning.search import Found


def tune(request: TuneRequest | str | os.PathLike[str], *args: Any, **options: Any) -> TuneResult:
    """Search for the `.tflite` of a model that meets every goal on its data and is fastest on the
    target (`objective="size"`: smallest); write OUT/best.tflite, best.yaml, tune.json, tune.md
    and pareto.png together.

    Takes a `TuneRequest`, or its fields as `tune(model, data, goal, out_dir, **options)`.

    Raises:
        InputError: a malformed goal, option or path; ClusterError: Ray unreachable;
        NoWinner: no variant meets the goal (tune.json, tune.md and pareto.png are still written);
        Interrupted: stopped by Ctrl-C or SIGTERM (rerun with `resume=True`).
    """
    from tfopt.tuning.finish import finish
    from tfopt.tuning.prepare import setup

    if not isinstance(request, TuneRequest):
        request = TuneRequest(request, *args, **options)
    elif args or options:
        raise TypeError("tune(request) takes no further arguments")
    ready = setup(request)
    cluster, found = _search_on_ray(request, ready)
    try:
        with _interruptible():
            return finish(request, ready, found, cluster)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while re-timing the front runners; rerun with "
                          f"{option('resume')} (every trial is kept)") from None  # fmt: skip


def _search_on_ray(request: TuneRequest, ready: Setup) -> tuple[dict[str, Any], Found]:
    """Start or join Ray, run the phases, shut Ray down; the cluster and what was found."""
    from tfopt.tuning import engine, search

    found = Found()
    try:
        cluster = engine.connect(request.ray_address, request.ray_cpus)
        # After ray.init, which installs a SIGTERM handler of its own that kills the driver.
        with _interruptible():
            try:
                import ray

                timer = engine.timer(ready.state, cluster["driver_node"], request.target,
                                     dict(request.target_options or {}), request.min_seconds,
                                     warmup=3)  # fmt: skip
                phases = engine.Phases(ray.put(ready.job), timer, engine.Ledger(ready.state),
                                       ready.state, request.on_progress)  # fmt: skip
                plan = search.Search(ready.space, ready.job, phases, request.objective,
                                     request.budget, ready.deadline)  # fmt: skip
                search.run(plan, found)
            finally:
                engine.shutdown()
    except KeyboardInterrupt:
        done = len(engine.Ledger(ready.state).rows())
        raise Interrupted(f"interrupted after {done} finished trials; rerun with "
                          f"{option('resume')} to continue without repeating them") from None  # fmt: skip
    return cluster, found


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM acts as Ctrl-C while the search runs, so both end in the same clean stop."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
