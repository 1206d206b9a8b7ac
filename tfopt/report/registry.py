"""The renderer registry: (result type, format) -> function from the result's document."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class View(enum.StrEnum):
    """The result types the report stage renders."""

    CONVERT = "convert"
    PLAN = "plan"  # convert --explain: the export plan, nothing converted
    COMPARE = "compare"
    EMBEDDING = "embedding"  # compare --embedding
    INSPECT = "inspect"  # with `gpu` placement when asked
    METADATA = "metadata"  # tfopt metadata: shown or edited
    BENCH = "bench"  # one BenchReport or a matrix of them
    LM_BENCH = "lm_bench"
    GENERATE = "generate"
    OPTIMIZE = "optimize"
    RECIPES = "recipes"  # {name: description}
    RECIPE = "recipe"  # one recipe document
    DEMO = "demo"
    TUNE = "tune"


class Format(enum.StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"
    PNG = "png"


Renderer = Callable[[Any], Any]  # a document -> str (text, Markdown, JSON) or bytes (PNG)
RENDERERS: dict[tuple[View, Format], Renderer] = {}


def renders(view: View, *formats: Format) -> Callable[[Renderer], Renderer]:
    """Register a function as the renderer of `view` in `formats`."""

    def register(fn: Renderer) -> Renderer:
        for f in formats:
            RENDERERS[(view, f)] = fn
        return fn

    return register
