"""What metadata to write: `Metadata`, whose fields are THE list of metadata fields.

A field's `key` is its name outside this type, as a convert option and a recipe key (the `name`
field is `model_name` there, so it does not read as the name of something else); its `help`
describes it wherever options are listed. `OPTION_KEYS` maps each key to its field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tfopt.errors import InputError
from tfopt.metadata.parse import parse_normalize, parse_sets


def _field(help: str, **extra: str) -> Any:  # noqa: A002 - the word a field's description is
    return field(default=None, metadata={"help": help, **extra})


@dataclass(frozen=True)
class Metadata:
    """What to write. Unset fields keep what the model already carries.

    `labels` is a text file, one class name per line, packed into the model for its first
    output; `normalize` is "MEAN,STD" (each a number, or one per channel joined by ':'), the
    `(pixel - mean) / std` an app applies before feeding the first input.
    """

    labels: str | None = _field(
        "Class names, one per line (UTF-8), packed into the file for the first output; their "
        "count must match it.",
        kind="path",
    )
    normalize: str | None = _field(
        "Input normalization an app applies before feeding pixels: (x - MEAN) / STD, e.g. "
        "127.5,127.5 or 0,255; per channel with ':' (0.485:0.456:0.406,0.229:0.224:0.225).",
        metavar="MEAN,STD",
    )
    name: str | None = _field("Metadata: the model's name.", key="model_name")
    description: str | None = _field("Metadata: what the model does.")
    version: str | None = _field("Metadata: the model's version.", metavar="V")
    author: str | None = _field("Metadata: who made it.")
    license: str | None = _field("Metadata: its license.")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"metadata {f.name}: expected text, got {value!r}")
        if self.normalize is not None:
            parse_normalize(self.normalize)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_sets(cls, sets: tuple[str, ...] | list[str], **given: str | None) -> Metadata:
        """From `KEY=VALUE` pairs (`tfopt metadata --set`) plus named fields."""
        values = {k: v for k, v in given.items() if v is not None}
        values.update(parse_sets(sets, (f.name for f in fields(cls))))
        return cls(**values)


OPTION_KEYS: dict[str, str] = {f.metadata.get("key", f.name): f.name for f in fields(Metadata)}
