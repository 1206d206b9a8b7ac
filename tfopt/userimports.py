"""User code a model needs: `--import MODULE_OR_FILE` for custom layers and models.

Importing runs code, so it is refused unless the user says `--unsafe` (like Lambda layers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfopt import keras_worlds
from tfopt.errors import InputError, ModelLoadError, first_line, option
from tfopt.fsutil import existing


def import_user_code(imports: tuple[str, ...] | list[str], unsafe: bool) -> dict[str, type]:
    """Import modules or `.py` files that define a model's custom layers and models.

    Importing runs the code, so it is refused unless `unsafe` (like Lambda layers). Classes
    registered with `register_keras_serializable` are then found by Keras; every Keras layer or
    model class the modules define is also returned as `custom_objects` for unregistered ones.

    Raises:
        InputError: imports without `unsafe`, or a missing file.
        ModelLoadError: the module cannot be imported (not found, syntax error, it raised).
    """
    if not imports:
        return {}
    if not unsafe:
        raise InputError(
            f"{option('imports')} runs the code it names; pass {option('unsafe')} too if you trust " + ", ".join(imports)
        )
    found: dict[str, type] = {}
    for target in imports:
        try:
            module = _import_one(target)
        except InputError:
            raise
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything, exit too
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ModelLoadError(f"cannot import {target}: {first_line(exc)}") from exc
        for value in vars(module).values():
            if isinstance(value, type) and keras_worlds.is_keras_class(value):
                found.setdefault(value.__name__, value)
    return found


def _import_one(target: str) -> Any:
    import importlib
    import importlib.util
    import sys

    if target.endswith(".py") or os.sep in target or "/" in target:
        path = existing(target, "module file")
        if path.is_dir() or path.suffix != ".py":
            raise InputError(f"{option('imports')} {target}: expected a module name or a .py file")
        name = f"tfopt_user_{path.stem}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(target)
    finally:
        sys.path.remove(os.getcwd())


def load_error(path: Path, exc: BaseException, custom: dict[str, type]) -> ModelLoadError:
    message = first_line(exc).split(". Make sure")[0]
    if "Could not locate" in message or "Unknown layer" in message or "Unknown object" in message:
        hint = (
            f"; it uses custom classes: pass {option('imports')} MODULE_OR_FILE (with {option('unsafe')}) that defines "
            "them"
            if not custom
            else f"; the modules given with {option('imports')} do not define it"
        )
        return ModelLoadError(f"cannot load {path}: {message}{hint}")
    return ModelLoadError(f"cannot load {path}: {message}")
