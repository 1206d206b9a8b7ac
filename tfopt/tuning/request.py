"""What a search is asked to do: every option of `tfopt tune` in one frozen `TuneRequest`,
checked when it is made, so a malformed goal or option fails before Ray starts or a file is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfopt.errors import InputError, option
from tfopt.tuning.goal import Goal, parse_goal
from tfopt.tuning.space import Space

OBJECTIVES = ("latency", "size")
_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class TuneRequest:
    """One search (see `tfopt.tune`): MODEL's `.tflite` that meets every `goal` on `data`, fastest
    on `target` (`objective="size"`: smallest), written to `out_dir`.

    Args:
        goal: one gate or several (`"cosine>=0.995"`); all must hold.
        space: the dimensions searched (`Space()`: every one that applies).
        budget: at most this many trials; `time_limit`: no trial starts after it (900, "30m").
        ray_address: join a running Ray cluster (HOST:PORT); `ray_cpus`: CPUs of a local one.
        resume: continue the search in `out_dir`; `overwrite`: start over.
        epochs, batch_size: the recipes' fine-tune; `seq_len`: fix free dimensions;
            `pooling`: how an encoder's sentence embeddings are pooled.
        eval_samples: held-out samples each trial is judged on; `min_seconds`: each timing's
            length; `final_repeats`: interleaved rounds when the front runners are re-timed.
        compare_presets: time the shipped presets beside the winner.
        target_options: `make_target` options (an ssh key...); `on_progress`: called with each
            trial's row as it ends.
    """

    model: str | os.PathLike[str]
    data: str | os.PathLike[str]
    goal: str | Sequence[str]
    out_dir: str | os.PathLike[str]
    objective: str = "latency"
    target: str = "local"
    space: Space | None = None
    budget: int | None = None
    time_limit: str | float | None = None
    ray_address: str | None = None
    ray_cpus: int | None = None
    resume: bool = False
    overwrite: bool = False
    unsafe: bool = False
    imports: tuple[str, ...] = ()
    epochs: int = 1
    batch_size: int = 64
    seq_len: int | None = None
    pooling: str = "mean"
    eval_samples: int = 500
    min_seconds: float = 0.3
    final_repeats: int = 3
    compare_presets: bool = True
    target_options: Mapping[str, Any] | None = None
    on_progress: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "goal", (self.goal,) if isinstance(self.goal, str) else tuple(self.goal))
        set_(self, "space", self.space or Space())
        set_(self, "imports", tuple(self.imports))
        set_(self, "target_options", dict(self.target_options or {}))
        if not self.goal:
            raise InputError(f"give at least one {option('goal')}, e.g. cosine>=0.995")
        self.goals  # noqa: B018 - each goal parses, or the request fails here
        if self.objective not in OBJECTIVES:
            raise InputError(f"{option('objective')} {self.objective}: choose "
                             f"{' or '.join(OBJECTIVES)}")  # fmt: skip
        if self.epochs < 0 or self.batch_size < 1:
            raise InputError(f"{option('epochs')} must be >= 0 and {option('batch_size')} >= 1")
        if self.budget is not None and self.budget < 1:
            raise InputError(f"{option('budget')} must be at least 1 trial")
        self.seconds  # noqa: B018 - the time limit parses

    @property
    def goals(self) -> tuple[Goal, ...]:
        return tuple(parse_goal(g) for g in self.goal)

    @property
    def seconds(self) -> float | None:
        """The time limit in seconds (None: no limit)."""
        if self.time_limit is None:
            return None
        text = str(self.time_limit).strip()
        try:
            seconds = float(text[:-1]) * _UNITS[text[-1]] if text[-1:] in _UNITS else float(text)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise InputError(f"{option('time_limit')} {text}: write seconds, or a number with s, "
                             "m or h (30m)")  # fmt: skip
        return seconds
