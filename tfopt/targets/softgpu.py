"""Which Vulkan device a GPU run uses: the user's own choice, a real GPU, or the software one
(Mesa lavapipe) that `make soft-gpu` installs into a per-user cache folder."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tfopt.errors import BenchError

SOFT_GPU_ENV = "TFOPT_SOFT_GPU"
ICD_DIRS = (Path("/usr/share/vulkan/icd.d"), Path("/etc/vulkan/icd.d"))
_SOFTWARE_ICDS = ("lvp", "lavapipe", "swiftshader")


def soft_gpu_home(env: Mapping[str, str] | None = None) -> Path:
    """Where `make soft-gpu` installs the software Vulkan device: a per-user cache folder."""
    env = os.environ if env is None else env
    cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tfopt" / "soft-gpu"


def soft_gpu_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The installed software Vulkan device: the folder in $TFOPT_SOFT_GPU, else the cache's."""
    env = os.environ if env is None else env
    value = env.get(SOFT_GPU_ENV, "").strip()
    folder = Path(value).expanduser() if value not in ("", "0", "1") else soft_gpu_home(env)
    return folder if (folder / "root" / "usr" / "share" / "vulkan").is_dir() else None


def _is_software_icd(path: Path) -> bool:
    try:
        library = str(json.loads(path.read_text()).get("ICD", {}).get("library_path", ""))
    except (OSError, ValueError, AttributeError):
        library = ""
    text = f"{path.name} {library}".lower()
    return any(name in text for name in _SOFTWARE_ICDS)


def real_gpu_icds(icd_dirs: Sequence[Path] = ICD_DIRS, dev: Path = Path("/dev")) -> list[Path]:
    """Vulkan drivers for a real GPU on this machine: ICD files other than software ones, counted
    only where the kernel shows a GPU (/dev/dri/renderD*, /dev/nvidia*). Debian's
    mesa-vulkan-drivers installs Intel and AMD ICD files on machines that have neither."""
    if not (any(dev.glob("dri/renderD*")) or any(dev.glob("nvidia[0-9]*"))):
        return []
    return [
        f
        for folder in icd_dirs
        for f in sorted(Path(folder).glob("*.json"))
        if not _is_software_icd(f)
    ]


def gpu_env(
    base: Mapping[str, str] | None = None,
    icd_dirs: Sequence[Path] = ICD_DIRS,
    dev: Path = Path("/dev"),
) -> dict[str, str]:
    """Environment for a GPU run. The user's own Vulkan setup (VK_ICD_FILENAMES,
    VK_DRIVER_FILES) wins; then a real GPU; the software device from `make soft-gpu` is used
    where no real one exists, or when asked with TFOPT_SOFT_GPU=1 (or =FOLDER); =0 never."""
    env = dict(os.environ if base is None else base)
    if "VK_ICD_FILENAMES" in env or "VK_DRIVER_FILES" in env:
        return env
    wanted = env.get(SOFT_GPU_ENV, "").strip()
    if wanted == "0":
        return env
    if not wanted and real_gpu_icds(icd_dirs, dev):
        return env
    soft = soft_gpu_dir(env)
    if soft is None:
        if wanted:
            where = wanted if wanted != "1" else soft_gpu_home(env)
            raise BenchError(
                f"{SOFT_GPU_ENV}={wanted} asks for the software GPU, but none is installed in "
                f"{where} (make soft-gpu)"
            )
        return env
    root = soft / "root"
    env["VK_ICD_FILENAMES"] = str(root / "usr/share/vulkan/icd.d/lvp_icd.json")
    found = sorted(root.glob("usr/lib/*/libvulkan_lvp.so"))  # x86_64-linux-gnu, aarch64-...
    libs = str(found[0].parent if found else root / "usr/lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libs, env.get("LD_LIBRARY_PATH")]))
    return env
