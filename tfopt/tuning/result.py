"""What a search returns (`TuneResult`, written as tune.json) and how it can end without a winner."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tfopt.errors import TfoptError

OUTPUTS = ["best.tflite", "best.yaml", "tune.json", "tune.md", "pareto.png"]


class NoWinner(TfoptError):
    """No variant meets the goal; the message names the best quality reached."""


class Interrupted(TfoptError):
    """The search was stopped (Ctrl-C, SIGTERM); finished trials are kept for --resume."""


@dataclass(frozen=True)
class TuneResult:
    model: str
    goals: list[str]
    objective: str
    target: str
    cluster: dict[str, Any]
    space: dict[str, Any]
    trials: list[dict[str, Any]]
    sensitivity: list[dict[str, Any]]
    final: list[dict[str, Any]]
    winner: dict[str, Any] | None
    presets: list[dict[str, Any]]
    seconds: float
    trials_run: int
    trials_resumed: int
    nodes_used: int
    out_dir: str
    notes: list[str]

    @property
    def trials_per_hour(self) -> float:
        return round(self.trials_run / self.seconds * 3600, 1) if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trials_per_hour": self.trials_per_hour}
