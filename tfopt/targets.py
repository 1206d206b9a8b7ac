"""Where a timing runs: this machine, a Linux device over ssh, or an Android phone over adb.

Local and ssh targets run the same single-file harness (`tfopt/harness.py`): over ssh it is copied
to the device with the model and run with the device's python, so a remote number comes from the
same timing code as a local one. Android runs LiteRT's native `benchmark_model` (what app
developers use there) and its output is parsed into the same result shape.

Every failure a user can cause (unreachable host, refused key, no python or ai_edge_litert on the
device, no adb device) becomes one `BenchError` line, within a timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tfopt.errors import BenchError, InputError
from tfopt.harness import parse_cpus

HARNESS = Path(__file__).with_name("harness.py")
SOFT_GPU_ENV = "TFOPT_SOFT_GPU"
ACCELERATORS = ("cpu", "gpu", "nnapi")


@dataclass(frozen=True)
class RunSpec:
    """One measurement: accelerator, threads and the harness budget."""

    accelerator: str
    threads: int
    warmup: int
    min_seconds: float
    runs: int | None
    xnnpack: bool
    pin: str | None
    lm: bool = False
    prompt_len: int = 16
    new_tokens: int = 32
    placement_only: bool = False

    def harness_args(self, data: str | None) -> list[str]:
        args = ["--threads", str(self.threads), "--warmup", str(self.warmup)]
        args += ["--min-seconds", str(self.min_seconds)]
        if self.runs is not None:
            args += ["--runs", str(self.runs)]
        if not self.xnnpack:
            args.append("--no-xnnpack")
        if data:
            args += ["--data", data]
        if self.lm:
            args += ["--lm", "--prompt-len", str(self.prompt_len)]
            args += ["--new-tokens", str(self.new_tokens)]
        if self.accelerator != "cpu":
            args += ["--accelerator", self.accelerator]
        if self.placement_only:
            args.append("--placement-only")
        if self.pin:
            args += ["--pin", self.pin]
        return args


def _harness_doc(label: str, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The harness prints one JSON line; turn a crash or an {"error"} into one clear line."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        doc = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        doc = {}
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise BenchError(f"{label}: the LiteRT runtime crashed ({name}) while timing")
    if proc.returncode != 0 or "error" in doc or not doc:
        reason = doc.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{label}: timing failed: {reason}")
    return doc


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


class Target:
    """Base: a place that can time a model. `name` is what reports show."""

    name = "local"

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        """Remove whatever was copied to the device."""


class LocalTarget(Target):
    """A fresh child process of this machine's python per measurement."""

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        if spec.accelerator == "nnapi":
            raise InputError("--accelerator nnapi exists on Android only (--target adb)")
        cmd = [sys.executable, str(HARNESS), str(model), *spec.harness_args(data)]
        env = gpu_env() if spec.accelerator == "gpu" else None
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{model}: timing run exceeded {timeout:.0f} s") from None
        return _harness_doc(str(model), proc)


# --- ssh -----------------------------------------------------------------------------------------

_SSH_FAILURES = (
    ("Connection refused", "connection refused (is sshd running on that port?)"),
    ("timed out", "connection timed out"),
    ("Could not resolve hostname", "unknown host name"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
    ("Permission denied", "the key was refused (Permission denied)"),
    (
        "Host key verification failed",
        "host key not trusted: add it to known_hosts "
        "(or --ssh-option StrictHostKeyChecking=accept-new)",
    ),
)


class SshTarget(Target):
    """A Linux device (an ARM board, a server) reached with the system's OpenSSH client."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        options: Sequence[str] = (),
        python: str = "python3",
        connect_timeout: int = 10,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise InputError(f"--target {url}: expected ssh://[user@]host[:port]")
        try:
            self.port = parts.port or 22
        except ValueError:
            raise InputError(f"--target {url}: the port is not a number") from None
        key = os.path.expanduser(key) if key else None
        if key is not None and not Path(key).is_file():
            raise InputError(f"--ssh-key not found: {key}")
        if shutil.which("ssh") is None:
            raise BenchError("ssh not found on PATH (install openssh-client)")
        self.name = url
        self.host = parts.hostname
        self.dest = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        self.python = python
        try:  # a command prefix is allowed: "env VK_ICD_FILENAMES=... /opt/venv/bin/python"
            self.python_cmd = shlex.split(python)
        except ValueError:
            raise InputError(f"--remote-python {python}: unbalanced quotes") from None
        if not self.python_cmd:
            raise InputError("--remote-python is empty")
        for option in options:
            name, sep, value = option.partition("=")
            if not sep or not name.strip():
                raise InputError(f"--ssh-option {option}: expected KEY=VALUE")
            if name.strip().lower() == "connecttimeout" and value.strip().isdigit():
                connect_timeout = int(value)
        self.connect_timeout = connect_timeout
        # ssh keeps the first value it sees for an option, so the user's come first.
        self.base = ["ssh", "-p", str(self.port)]
        for option in options:
            self.base += ["-o", option]
        self.base += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
        self.base += ["-o", "LogLevel=ERROR"]
        if key:
            self.base += ["-i", key, "-o", "IdentitiesOnly=yes"]
        self.remote_dir: str | None = None
        self.uploaded: dict[Path, str] = {}

    def _ssh(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Any:
        try:
            return subprocess.run(
                [*self.base, self.dest, command],
                input=stdin,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name}: no answer within {timeout:.0f} s") from None

    def _fail(self, proc: Any, what: str) -> BenchError:
        stderr = proc.stderr.decode(errors="replace") if proc.stderr else ""
        if proc.returncode == 255:
            for needle, meaning in _SSH_FAILURES:
                if needle in stderr:
                    return BenchError(f"{self.name}: {meaning}")
        last = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return BenchError(f"{self.name}: {what}: {last}")

    def _prepare(self) -> str:
        """Check python + numpy + ai_edge_litert on the device, make a private folder, copy the
        harness. Done once per target."""
        if self.remote_dir is not None:
            return self.remote_dir
        probe = (
            "import importlib.util as u, json, sys; "
            "print(json.dumps({'python': sys.version.split()[0], 'missing': "
            "[m for m in ('numpy', 'ai_edge_litert') if u.find_spec(m) is None]}))"
        )
        py = shlex.join(self.python_cmd)
        proc = self._ssh(f"{py} -c {shlex.quote(probe)}", timeout=self.connect_timeout + 20)
        if proc.returncode == 127 or (proc.returncode != 0 and b"not found" in proc.stderr):
            raise BenchError(f"{self.name}: python not found on the device: {self.python}")
        if proc.returncode != 0:
            raise self._fail(proc, "python check failed")
        lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
        found = json.loads(lines[-1]) if lines else {"missing": ["numpy", "ai_edge_litert"]}
        if found["missing"]:
            missing = " and ".join(found["missing"])
            raise BenchError(
                f"{self.name}: {missing} missing for {self.python} on the device "
                f"(pip install numpy ai-edge-litert)"
            )
        proc = self._ssh("mktemp -d /tmp/tfopt-bench.XXXXXX")
        if proc.returncode != 0:
            raise self._fail(proc, "cannot make a folder in /tmp")
        self.remote_dir = proc.stdout.decode().strip()
        self._upload(HARNESS.read_bytes(), "harness.py")
        return self.remote_dir

    def _upload(self, data: bytes, name: str) -> str:
        path = f"{self.remote_dir}/{name}"
        proc = self._ssh(f"cat > {shlex.quote(path)}", stdin=data, timeout=600)
        if proc.returncode != 0:
            raise self._fail(proc, f"copying {name} failed")
        return path

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        if spec.accelerator == "nnapi":
            raise InputError("--accelerator nnapi exists on Android only (--target adb)")
        folder = self._prepare()
        if model not in self.uploaded:
            self.uploaded[model] = self._upload(model.read_bytes(), f"m{len(self.uploaded)}.tflite")
        remote_data = None
        if data:
            key = Path(data)
            if key not in self.uploaded:
                suffix = "".join(key.suffixes[-1:])
                self.uploaded[key] = self._upload(
                    key.read_bytes(), f"d{len(self.uploaded)}{suffix}"
                )
            remote_data = self.uploaded[key]
        args = [*self.python_cmd, f"{folder}/harness.py", self.uploaded[model]]
        args += spec.harness_args(remote_data)
        # "; exit $?" keeps the remote shell from exec-ing the harness: a harness killed by a
        # signal then ends as the shell's 128+N (a bare exec'd command gives ssh's own 255).
        proc = self._ssh(f"{shlex.join(args)}; exit $?", timeout=timeout)
        if proc.returncode == 255:
            raise self._fail(proc, "timing failed")
        stdout = proc.stdout.decode(errors="replace")
        returncode = proc.returncode
        if 128 < returncode < 128 + 65 and not any(
            ln.startswith("{") for ln in stdout.splitlines()
        ):
            returncode = -(returncode - 128)  # the same crash report as a local run
        text = subprocess.CompletedProcess(
            proc.args, returncode, stdout, proc.stderr.decode(errors="replace")
        )
        doc = _harness_doc(f"{self.name}: {model.name}", text)
        doc["machine"] = {**doc.get("machine", {}), "host": self.host}
        return doc

    def close(self) -> None:
        if self.remote_dir is not None:
            self._ssh(f"rm -rf {shlex.quote(self.remote_dir)}", timeout=30)
            self.remote_dir = None
            self.uploaded.clear()


# --- adb -----------------------------------------------------------------------------------------

_TIMINGS = re.compile(
    r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
    r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)"
)
_MEMORY = re.compile(
    r"(Peak memory footprint|Memory footprint delta[^:]*) \(MB\): init=([\d.]+) overall=([\d.]+)"
)
_COUNT_LINE = re.compile(r"^count=\d+ .*", re.M)
_PREFIX = re.compile(r"^(.*?\btflite\s*:\s|INFO:\s+)")


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """Parse what LiteRT's native `benchmark_model` prints into a harness-shaped result.

    Times in the tool's summary are microseconds: Init, First inference, Warmup (avg) and
    Inference (avg); the last `count=... min=... max=... avg=... std=...` line is the timed runs.
    Peak memory is the tool's "Peak memory footprint" if printed, else its footprint delta.
    """
    # Drop logcat prefixes ("05-30 15:16:44.857 3380 3380 I tflite  : ") and newer "INFO: " ones.
    lines = [_PREFIX.sub("", ln) for ln in text.splitlines()]
    text = "\n".join(lines)
    m = _TIMINGS.search(text)
    if not m:
        tail = [ln for ln in lines if ln.strip()][-1:] or ["no output"]
        raise BenchError(f"benchmark_model printed no timings; its last line: {tail[0].strip()}")
    init_us, first_us, warmup_us, avg_us = (float(g) for g in m.groups())
    stats: dict[str, float] = {}
    counts = _COUNT_LINE.findall(text)
    if counts:
        for pair in counts[-1].split():
            key, _, value = pair.partition("=")
            try:
                stats[key] = float(value)
            except ValueError:
                continue
    latency = {"mean": round(avg_us, 2)}
    for key, name in (("median", "p50"), ("p95", "p95"), ("min", "min"), ("max", "max")):
        if key in stats:
            latency[name] = stats[key]
    if "std" in stats:
        latency["std"] = stats["std"]
    memory: dict[str, float] = {}
    for kind, _init, overall in _MEMORY.findall(text):
        memory["peak" if kind.startswith("Peak") else "delta"] = float(overall)
    accelerated = None
    if "completely executed by the delegate" in text:
        accelerated = True
    elif "partially executed by the delegate" in text or "will not be executed" in text:
        accelerated = False
    result: dict[str, Any] = {
        "load_ms": round(init_us / 1000, 3),
        "first_ms": round(first_us / 1000, 3),
        "warmup_avg_ms": round(warmup_us / 1000, 3),
        "runs": int(stats["count"]) if "count" in stats else None,
        "latency_us": latency,
        "latency_stat": "p50" if "p50" in latency else "mean",
        "peak_memory_mb": memory.get("peak", memory.get("delta")),
    }
    if accelerated is not None:
        result["fully_accelerated"] = accelerated
    return result


def cpu_mask(cpus: str) -> str:
    """'4,5,6,7' -> 'f0' (taskset's hex mask)."""
    return format(sum(1 << c for c in parse_cpus(cpus)), "x")


class AdbTarget(Target):
    """An Android device: push the model and `benchmark_model`, run it in `adb shell`.

    Each run works in its own folder under /data/local/tmp (a random name, created with a plain
    `mkdir` that fails rather than reuse another run's folder) and removes only that folder.
    Models are stored there under their sha256, so two files with one name stay apart.
    """

    DEVICE_BASE = "/data/local/tmp"
    _OK = "tfopt-ok"

    def __init__(self, serial: str | None = None, binary: str | None = None) -> None:
        self.name = f"adb:{serial}" if serial else "adb"
        self.serial = serial
        self.binary = binary
        self.device_dir = f"{self.DEVICE_BASE}/tfopt-{secrets.token_hex(6)}"
        self.created = False
        self.ready = False
        self.pushed: set[str] = set()
        self.machine: dict[str, Any] = {}

    def _adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = ["adb", *(["-s", self.serial] if self.serial else []), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{self.name}: adb gave no answer within {timeout:.0f} s") from None

    def _shell(self, what: str, *cmd: str, timeout: float = 60) -> None:
        """Run `cmd` on the device; raise one line unless it succeeded. Older adb versions
        always exit 0, so success is also read from an echo that runs only after it."""
        proc = self._adb("shell", shlex.join(cmd), "&&", "echo", self._OK, timeout=timeout)
        if proc.returncode != 0 or self._OK not in proc.stdout:
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            reason = said[-1] if said else f"exit code {proc.returncode}"
            raise BenchError(f"{self.name}: {what} failed: {reason}")

    def _push(self, local: str, remote: str, what: str) -> None:
        pushed = self._adb("push", local, remote, timeout=600)
        if pushed.returncode != 0:
            said = (pushed.stderr.strip() or pushed.stdout.strip()).splitlines()
            reason = said[-1] if said else f"exit code {pushed.returncode}"
            raise BenchError(f"{self.name}: pushing {what} failed: {reason}")

    def _prepare(self) -> None:
        if self.ready:
            return
        if shutil.which("adb") is None:
            raise BenchError("adb not found on PATH (Debian/Ubuntu: apt-get install adb)")
        state = self._adb("get-state", timeout=30)
        if state.returncode != 0 or state.stdout.strip() != "device":
            said = (state.stderr.strip() or state.stdout.strip() or "no device").splitlines()[-1]
            raise BenchError(f"{self.name}: no Android device ready: {said}")
        props = {}
        for prop in ("ro.product.model", "ro.product.cpu.abi", "ro.build.version.release"):
            props[prop] = self._adb("shell", "getprop", prop).stdout.strip()
        abi = props["ro.product.cpu.abi"]
        self.machine = {
            "device": props["ro.product.model"],
            "abi": abi,
            "android": props["ro.build.version.release"],
        }
        if not self.binary:
            raise BenchError(
                f"{self.name}: give --benchmark-binary: LiteRT's benchmark_model built for {abi}"
            )
        if not Path(self.binary).is_file():
            raise InputError(f"--benchmark-binary not found: {self.binary}")
        self._shell(f"making {self.device_dir}", "mkdir", self.device_dir)
        self.created = True
        binary = f"{self.device_dir}/benchmark_model"
        self._push(self.binary, binary, "benchmark_model")
        self._shell("making benchmark_model executable", "chmod", "755", binary)
        self.ready = True

    def command(self, graph: str, spec: RunSpec) -> list[str]:
        """The `adb shell` command line for one measurement (kept separate so tests can read it)."""
        cmd = [f"{self.device_dir}/benchmark_model", f"--graph={graph}"]
        cmd += [f"--num_threads={spec.threads}", f"--warmup_runs={spec.warmup}"]
        cmd += [f"--min_secs={spec.min_seconds}"]
        if spec.runs is not None:
            cmd += [f"--num_runs={spec.runs}"]
        cmd += [f"--use_gpu={str(spec.accelerator == 'gpu').lower()}"]
        cmd += [f"--use_nnapi={str(spec.accelerator == 'nnapi').lower()}"]
        cmd += [f"--use_xnnpack={str(spec.xnnpack and spec.accelerator == 'cpu').lower()}"]
        if spec.pin:
            cmd = ["taskset", cpu_mask(spec.pin), *cmd]
        return cmd

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        if spec.lm:
            raise InputError("--lm timing runs through the Python harness: use a local/ssh target")
        if data:
            raise InputError("--data is not passed to benchmark_model; it feeds random inputs")
        self._prepare()
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        graph = f"{self.device_dir}/{sha}.tflite"
        if sha not in self.pushed:
            self._push(str(model), graph, model.name)
            self.pushed.add(sha)
        proc = self._adb("shell", shlex.join(self.command(graph, spec)), timeout=timeout)
        result = parse_benchmark_output(proc.stdout + "\n" + proc.stderr)
        result = {"accelerator": spec.accelerator, "threads": spec.threads, **result}
        if spec.pin:
            result["pinned_cpus"] = parse_cpus(spec.pin)
        result["machine"] = self.machine
        return result

    def close(self) -> None:
        """Remove this run's folder (and only it) from the device."""
        if self.created:
            self.created = self.ready = False
            self.pushed.clear()
            self._shell(f"removing {self.device_dir}", "rm", "-rf", self.device_dir, timeout=30)


@contextlib.contextmanager
def opened(target: Target) -> Iterator[Target]:
    """Use `target`, then close it. A failure to clean up is reported only when nothing else
    failed: it never hides the error that stopped the timing."""
    try:
        yield target
    except BaseException:
        with contextlib.suppress(Exception):
            target.close()
        raise
    target.close()


def make_target(
    spec: str,
    ssh_key: str | None = None,
    ssh_options: Sequence[str] = (),
    remote_python: str = "python3",
    benchmark_binary: str | None = None,
) -> Target:
    """'local', 'ssh://user@host[:port]', 'adb' or 'adb:SERIAL' -> a Target."""
    if spec in ("", "local"):
        return LocalTarget()
    if spec.startswith("ssh://"):
        return SshTarget(spec, ssh_key, ssh_options, remote_python)
    if spec == "adb" or spec.startswith("adb:"):
        return AdbTarget(spec[4:] or None, benchmark_binary)
    raise InputError(f"--target {spec}: use local, ssh://user@host[:port], adb or adb:SERIAL")
