"""Views of the shipped recipe list and of one recipe (YAML, ready to copy)."""

from __future__ import annotations

from typing import Any

from tfopt.report.registry import Format, View, renders
from tfopt.report.tables import markdown_table


@renders(View.RECIPES, Format.TEXT)
def recipes_text(d: dict[str, str]) -> str:
    return "\n".join(f"{k:22s} {v}" for k, v in d.items())


@renders(View.RECIPES, Format.MARKDOWN)
def recipes_markdown(d: dict[str, str]) -> str:
    return markdown_table(["recipe", "description"], [[k, v] for k, v in d.items()]) + "\n"


@renders(View.RECIPE, Format.TEXT)
def recipe_text(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False).rstrip()


@renders(View.RECIPE, Format.MARKDOWN)
def recipe_markdown(d: dict[str, Any]) -> str:
    return f"# recipe `{d.get('name')}`\n\n```yaml\n{recipe_text(d)}\n```\n"
