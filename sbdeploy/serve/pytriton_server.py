"""A live Triton server on loopback: the sbdeploy ONNX Runtime runner (OrtRunner) behind PyTriton's bundled Triton.

PyTriton pins ``numpy<2``, so the server runs in its own process with a PyTriton interpreter (docs/serving.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sbdeploy.errors import BackendUnavailableError, ConfigError
from sbdeploy.files import describe_file
from sbdeploy.serve.config_check import check_model_config

PYTHON_ENV_VAR = "SBDEPLOY_PYTRITON_PYTHON"
NO_PYTRITON = (
    "no PyTriton interpreter: run `bash scripts/setup.sh --with-triton` (it makes .venv-triton) "
    f"or set {PYTHON_ENV_VAR} to a python that has nvidia-pytriton and numpy<2"
)
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServeOptions:
    """How the served model is batched and run."""

    model_name: str = "sbdeploy"
    max_batch: int = 16  # Triton max_batch_size of the bound model
    queue_delay_us: int = 100  # dynamic batcher max queue delay
    preferred_batch: tuple[int, ...] = ()  # dynamic batcher preferred batch sizes
    instances: int = 1  # model instances (one ONNX Runtime session each)
    threads: int | None = None  # intra-op threads per session (None: ONNX Runtime's default)
    startup_timeout_s: float = 90.0  # give up when the model is not ready by then
    stop_timeout_s: float = 30.0  # then kill the process group


def find_pytriton_python() -> Path | None:
    """The interpreter that runs PyTriton here: ``$SBDEPLOY_PYTRITON_PYTHON``, this checkout's ``.venv-triton``,
    or this one if it has PyTriton and numpy 1.x; None if none does."""
    env = os.environ.get(PYTHON_ENV_VAR)
    if env:
        return Path(env) if Path(env).is_file() else None
    local = _REPO_ROOT / ".venv-triton" / "bin" / "python"
    if local.is_file():
        return local
    if importlib.util.find_spec("pytriton") is not None:
        import numpy as np

        if int(np.__version__.split(".")[0]) < 2:
            return Path(sys.executable)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group, its output going to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGINT, then after ``timeout_s`` SIGKILL to the process group (ours: started with ``start_new_session``)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class PyTritonServer:
    """Context manager: serve one ONNX file behind Triton on 127.0.0.1, stop it on exit (its log: :attr:`log_path`)."""

    def __init__(self, onnx_path: str | Path, options: ServeOptions | None = None) -> None:
        self.onnx_path = Path(onnx_path).resolve()
        self.options = options or ServeOptions()
        python = find_pytriton_python()
        if python is None:
            raise BackendUnavailableError(NO_PYTRITON)
        self.python = python
        self.log_path = Path(tempfile.mkstemp(prefix="pytriton.", suffix=".log")[1])
        self.http_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_model_folder(cls, folder: str | Path) -> PyTritonServer:
        """Serve an ``onnxruntime_onnx`` folder written by ``sbdeploy triton-repo`` with its config's batching."""
        folder = Path(folder)
        config = check_model_config((folder / "config.pbtxt").read_text())
        if config.platform != "onnxruntime_onnx" or config.max_batch_size < 1:
            raise ConfigError(f"{folder}: only batching onnxruntime_onnx models can be served here")
        options = ServeOptions(
            model_name=config.name,
            max_batch=config.max_batch_size,
            queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
            preferred_batch=tuple(config.dynamic_batching.preferred_batch_size),
            instances=sum(g.count for g in config.instance_group) or 1,
        )
        return cls(folder / "1" / (config.default_model_filename or "model.onnx"), options)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def __enter__(self) -> PyTritonServer:
        ports = [_free_port() for _ in range(3)]  # http, grpc, metrics
        self.http_port = ports[0]
        server = [str(self.python), "-m", __name__, str(self.onnx_path), json.dumps(asdict(self.options))]
        path = os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        self._process = _spawn([*server, *map(str, ports)], self.log_path, {**os.environ, "PYTHONPATH": path})
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        url = f"http://{self.http_url}/v2/models/{self.options.model_name}/ready"
        deadline = time.monotonic() + self.options.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                why = f"exited with code {self._process.returncode} before the model was ready"
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        else:
            why = f"was not ready after {self.options.startup_timeout_s:.0f} s"
        raise BackendUnavailableError(
            f"the PyTriton server {why}; its log ({self.log_path}) ends with:\n{_tail(self.log_path, 30)}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _stop(process, self.options.stop_timeout_s)

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.stop()
        if exc_type is None:
            self.log_path.unlink(missing_ok=True)


def check_with_tritonserver(repository: str | Path, *, timeout_s: float = 60.0) -> dict[str, str | None]:
    """Model folder name -> None when PyTriton's bundled tritonserver (no backends) accepts its config, else its error."""
    repository = Path(repository).resolve()
    names = sorted(p.name for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    python = find_pytriton_python()
    if python is None:
        raise BackendUnavailableError(NO_PYTRITON)
    code = "import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / 'tritonserver' / 'bin' / 'tritonserver')"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    binary = Path(found.stdout.strip())
    if found.returncode != 0 or not binary.is_file():
        raise BackendUnavailableError(f"{python} has no PyTriton tritonserver ({found.stderr.strip()[-300:]})")
    verdicts: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="sbdeploy-tritonserver.") as tmp:
        log_path = Path(tmp) / "tritonserver.log"
        (Path(tmp) / "backends").mkdir()
        flags = {
            "model-repository": repository,
            "disable-auto-complete-config": None,
            "exit-on-error": "false",
            "allow-metrics": "false",
            "backend-directory": Path(tmp) / "backends",
            "http-address": "127.0.0.1",
            "http-port": _free_port(),
            "grpc-address": "127.0.0.1",
            "grpc-port": _free_port(),
        }
        command = [str(binary), *(f"--{k}" if v is None else f"--{k}={v}" for k, v in flags.items())]
        process = _spawn(command, log_path)
        try:
            deadline = time.monotonic() + timeout_s
            while len(verdicts) < len(names) and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.2)
                for line in log_path.read_text(errors="replace").splitlines():
                    for name in names:
                        if f'"loading: {name}:' in line:
                            verdicts.setdefault(name, None)
                        elif f"Poll failed for model directory '{name}':" in line:
                            verdicts[name] = line.split(f"'{name}':", 1)[1].strip().rstrip('"')
        finally:
            _stop(process, 30)
        missing = [n for n in names if n not in verdicts]
        if missing:
            raise BackendUnavailableError(
                f"tritonserver gave no verdict on {missing} within {timeout_s:.0f} s:\n{_tail(log_path, 20)}"
            )
    return verdicts


# --------------------------------------------------------------------------- the server process


def _use_matching_libpython() -> None:
    """Let Triton's Python-backend stub load this interpreter's libpython, not the system's."""
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and library and (Path(libdir) / library).exists():
        current = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = libdir + (os.pathsep + current if current else "")


def main(argv: list[str] | None = None) -> None:
    """Serve ONNX with ServeOptions (JSON) on ports HTTP GRPC METRICS until SIGINT/SIGTERM or the parent is gone."""
    onnx, options_json, *ports = sys.argv[1:] if argv is None else argv
    options = ServeOptions(**json.loads(options_json))
    http, grpc, metrics = map(int, ports)
    _use_matching_libpython()
    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from sbdeploy.backends.ort import OrtRunner

    file = describe_file(onnx)

    def make_infer(runner: Any) -> Any:
        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            return runner.infer(inputs)

        return infer

    def tensors(items: Any) -> list[Any]:
        return [
            Tensor(name=t.name, dtype=t.dtype, shape=tuple(-1 if d is None else d for d in t.shape[1:])) for t in items
        ]

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http,
        grpc_address="127.0.0.1",
        grpc_port=grpc,
        metrics_port=metrics,
        allow_metrics=False,
        exit_timeout_secs=10,
    )
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    parent = os.getppid()
    with contextlib.ExitStack() as stack:
        runners = [
            stack.enter_context(OrtRunner(onnx, provider="cpu", threads=options.threads))
            for _ in range(options.instances)
        ]
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="sbdeploy-pytriton."))
        triton = stack.enter_context(
            Triton(
                config=config,
                workspace=Path(tmp) / "workspace",  # PyTriton makes (and removes) the folder itself
                # PyTriton's defaults, less "statistics": the benchmark reads the batch sizes Triton formed.
                security_config=TritonSecurityConfig(
                    restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"]
                ),
            )
        )
        triton.bind(
            model_name=options.model_name,
            infer_func=[make_infer(r) for r in runners],
            inputs=tensors(file.inputs),
            outputs=tensors(file.outputs),
            config=ModelConfig(
                max_batch_size=options.max_batch,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=options.queue_delay_us,
                    preferred_batch_size=list(options.preferred_batch) or None,
                ),
            ),
            strict=True,
        )
        triton.run()
        print(f"serving {onnx} as {options.model_name!r} on http {http}, grpc {grpc}", flush=True)
        while not stop and os.getppid() == parent and triton.is_alive():
            time.sleep(0.2)


if __name__ == "__main__":
    main()
