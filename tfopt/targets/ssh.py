"""A Linux device (an ARM board, a server) over the system's OpenSSH client: the runtime zipapp
is copied there once with the model and run with the device's python, so a remote number comes
from the same timing code as a local one."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tfopt.errors import BenchError, InputError, option
from tfopt.targets.base import ZIPAPP_NAME, RunSpec, Target, runtime_doc, runtime_zipapp

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
        f"(or {option('ssh_options')} StrictHostKeyChecking=accept-new)",
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
            raise InputError(f"{option('target')} {url}: expected ssh://[user@]host[:port]")
        try:
            self.port = parts.port or 22
        except ValueError:
            raise InputError(f"{option('target')} {url}: the port is not a number") from None
        key = os.path.expanduser(key) if key else None
        if key is not None and not Path(key).is_file():
            raise InputError(f"{option('ssh_key')} not found: {key}")
        if shutil.which("ssh") is None:
            raise BenchError("ssh not found on PATH (install openssh-client)")
        self.name = url
        self.host = parts.hostname
        self.dest = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        self.python = python
        try:  # a command prefix is allowed: "env VK_ICD_FILENAMES=... /opt/venv/bin/python"
            self.python_cmd = shlex.split(python)
        except ValueError:
            raise InputError(f"{option('remote_python')} {python}: unbalanced quotes") from None
        if not self.python_cmd:
            raise InputError(f"{option('remote_python')} is empty")
        for opt in options:
            name, sep, value = opt.partition("=")
            if not sep or not name.strip():
                raise InputError(f"{option('ssh_options')} {opt}: expected KEY=VALUE")
            if name.strip().lower() == "connecttimeout" and value.strip().isdigit():
                connect_timeout = int(value)
        self.connect_timeout = connect_timeout
        # ssh keeps the first value it sees for an option, so the user's come first.
        self.base = ["ssh", "-p", str(self.port)]
        for opt in options:
            self.base += ["-o", opt]
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
        runtime zipapp. Done once per target."""
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
        self._upload(runtime_zipapp().read_bytes(), ZIPAPP_NAME)
        return self.remote_dir

    def _upload(self, data: bytes, name: str) -> str:
        path = f"{self.remote_dir}/{name}"
        proc = self._ssh(f"cat > {shlex.quote(path)}", stdin=data, timeout=600)
        if proc.returncode != 0:
            raise self._fail(proc, f"copying {name} failed")
        return path

    def _model(self, model: Path) -> str:
        """The model's path on the device, copied there once."""
        if model not in self.uploaded:
            self.uploaded[model] = self._upload(model.read_bytes(), f"m{len(self.uploaded)}.tflite")
        return self.uploaded[model]

    def outputs(
        self, model: Path, x: dict[str, Any], threads: int, timeout: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        import io

        import numpy as np

        folder = self._prepare()
        remote_model = self._model(model)
        packed = io.BytesIO()
        np.savez(packed, **x)
        data = self._upload(packed.getvalue(), f"x{len(self.uploaded)}.npz")
        result = f"{data[:-4]}-out.npz"
        args = [*self.python_cmd, f"{folder}/{ZIPAPP_NAME}", remote_model, "--data", data,
                "--outputs", result, "--threads", str(threads)]  # fmt: skip
        proc = self._ssh(f"{shlex.join(args)}; exit $?", timeout=timeout)
        if proc.returncode == 255:
            raise self._fail(proc, "running the model failed")
        text = subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )  # fmt: skip
        doc = runtime_doc(f"{self.name}: {model.name} (outputs)", text)
        fetched = self._ssh(f"cat {shlex.quote(result)} && rm -f {shlex.quote(result)} "
                            f"{shlex.quote(data)}", timeout=600)  # fmt: skip
        if fetched.returncode != 0:
            raise self._fail(fetched, "fetching the outputs failed")
        try:
            with np.load(io.BytesIO(fetched.stdout), allow_pickle=False) as z:
                found = {name: z[f"o{i}"] for i, name in enumerate(doc["outputs"])}
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"{self.name}: the outputs came back damaged ({exc})") from None
        return found, {**doc.get("machine", {}), "host": self.host}

    def measure(self, model: Path, spec: RunSpec, data: str | None, timeout: float) -> dict:
        if spec.accelerator == "nnapi":
            raise InputError(f"{option('accelerator')} nnapi exists on Android only ({option('target')} adb)")
        folder = self._prepare()
        remote_model = self._model(model)
        remote_data = None
        if data:
            key = Path(data)
            if key not in self.uploaded:
                suffix = "".join(key.suffixes[-1:])
                self.uploaded[key] = self._upload(
                    key.read_bytes(), f"d{len(self.uploaded)}{suffix}"
                )
            remote_data = self.uploaded[key]
        args = [*self.python_cmd, f"{folder}/{ZIPAPP_NAME}", remote_model]
        args += spec.runtime_args(remote_data)
        # "; exit $?" keeps the remote shell from exec-ing the runtime: a runtime killed by a
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
        doc = runtime_doc(f"{self.name}: {model.name}", text)
        doc["machine"] = {**doc.get("machine", {}), "host": self.host}
        return doc

    def close(self) -> None:
        if self.remote_dir is not None:
            self._ssh(f"rm -rf {shlex.quote(self.remote_dir)}", timeout=30)
            self.remote_dir = None
            self.uploaded.clear()
