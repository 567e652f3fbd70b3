"""A live Triton server on loopback: the sbdeploy ONNX Runtime runner (OrtRunner) behind PyTriton's bundled Triton.

PyTriton (``nvidia-pytriton``) ships a Triton Inference Server binary and serves a
Python callable through Triton's Python backend, with Triton's dynamic batcher in
front. It pins ``numpy<2`` (pytriton#93; with numpy 2 its responses come back empty),
while sbdeploy's environment has numpy 2. So the server runs in its own process,
started with a *PyTriton interpreter*: ``scripts/setup.sh --with-triton`` makes ``.venv-triton``,
a small venv with PyTriton and numpy 1.x that sees the main ``.venv`` (torch,
onnxruntime, sbdeploy) behind its own packages through a ``.pth`` file.

:class:`PyTritonServer` (used by the tests and ``scripts/bench_triton.py``) starts
that process on free ports bound to 127.0.0.1 only, waits until the model is ready
(bounded), and stops the process group on exit. ``python -m
sbdeploy.serve.pytriton_server`` is the process itself (:func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sbdeploy.errors import BackendUnavailableError

PYTHON_ENV_VAR = "SBDEPLOY_PYTRITON_PYTHON"
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
    """The interpreter that can run PyTriton here, or None.

    Looked up in order: ``$SBDEPLOY_PYTRITON_PYTHON``; ``.venv-triton/bin/python`` of this
    source checkout (made by ``scripts/setup.sh --with-triton``); the current interpreter when it has
    PyTriton and numpy 1.x.
    """
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


class PyTritonServer:
    """Context manager: serve one ONNX file behind Triton on 127.0.0.1, stop it on exit.

    Args:
        onnx_path: the model (input and output names and shapes are read from it).
        options: batching and runtime options.
        python: the PyTriton interpreter (default: :func:`find_pytriton_python`).
        log_path: where the server's output goes (default: a temporary file).
    """

    def __init__(
        self,
        onnx_path: str | Path,
        options: ServeOptions | None = None,
        *,
        python: str | Path | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.onnx_path = Path(onnx_path).resolve()
        self.options = options or ServeOptions()
        found = Path(python) if python else find_pytriton_python()
        if found is None:
            raise BackendUnavailableError(
                "no PyTriton interpreter: run `bash scripts/setup.sh --with-triton` (it makes .venv-triton) "
                f"or set {PYTHON_ENV_VAR} to a python that has nvidia-pytriton and numpy<2"
            )
        self.python = found
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="pytriton.", suffix=".log")[1])
        self.http_port = self.grpc_port = self.metrics_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_model_folder(cls, folder: str | Path, **kwargs: Any) -> PyTritonServer:
        """Serve an ``onnxruntime_onnx`` folder written by ``sbdeploy triton-repo`` with its config's batching.

        PyTriton's bundled Triton has only the Python backend, so the folder's ``1/model.onnx``
        runs in sbdeploy's ONNX Runtime runner; name, max_batch_size, dynamic batching and
        instance count come from the folder's ``config.pbtxt`` (parsed with Triton's ModelConfig).
        """
        from sbdeploy.errors import ConfigError
        from sbdeploy.serve.config_check import check_model_config

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
        return cls(folder / "1" / (config.default_model_filename or "model.onnx"), options, **kwargs)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> PyTritonServer:
        o = self.options
        self.http_port, self.grpc_port, self.metrics_port = _free_port(), _free_port(), _free_port()
        command = [
            str(self.python), "-m", "sbdeploy.serve.pytriton_server", str(self.onnx_path),
            "--model-name", o.model_name, "--max-batch", str(o.max_batch),
            "--queue-delay-us", str(o.queue_delay_us), "--instances", str(o.instances),
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        if o.threads is not None:
            command += ["--threads", str(o.threads)]
        for size in o.preferred_batch:
            command += ["--preferred-batch", str(size)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
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
                raise BackendUnavailableError(
                    f"the PyTriton server exited with code {self._process.returncode} before the model was ready; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise BackendUnavailableError(
            f"the PyTriton server was not ready after {self.options.startup_timeout_s:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Ask the server to stop (SIGINT), then kill its process group after ``stop_timeout_s``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=self.options.stop_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group is ours: start_new_session made it
            process.wait(timeout=10)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._own_log and exc is None:
            self.log_path.unlink(missing_ok=True)


def tritonserver_binary(python: str | Path | None = None) -> Path:
    """The ``tritonserver`` executable that PyTriton bundles, found through the PyTriton interpreter."""
    python = python or find_pytriton_python()
    if python is None:
        raise BackendUnavailableError(
            "no PyTriton interpreter: run `bash scripts/setup.sh --with-triton` (it makes .venv-triton) "
            f"or set {PYTHON_ENV_VAR} to a python that has nvidia-pytriton"
        )
    code = "import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / 'tritonserver' / 'bin' / 'tritonserver')"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    binary = Path(found.stdout.strip())
    if found.returncode != 0 or not binary.is_file():
        raise BackendUnavailableError(f"{python} has no PyTriton tritonserver ({found.stderr.strip()[-300:]})")
    return binary


def check_with_tritonserver(
    repository: str | Path, *, python: str | Path | None = None, timeout_s: float = 60.0
) -> dict[str, str | None]:
    """Let a real Triton (PyTriton's bundled 2.x server) read and validate every model config of ``repository``.

    Triton validates each ``config.pbtxt`` when it polls the repository, before it looks
    for the model's backend. The bundled server has no TensorRT or ONNX Runtime backend,
    so a valid model then fails with "unable to find backend library"; an invalid one
    fails the poll with Triton's own message. The server binds 127.0.0.1 on free ports,
    gets an empty backend directory and is stopped as soon as every model has a verdict.

    Returns:
        model folder name -> None when Triton accepted its config, else Triton's error.
    """
    repository = Path(repository).resolve()
    names = sorted(p.name for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    binary = tritonserver_binary(python)
    verdicts: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="sbdeploy-tritonserver.") as tmp:
        log_path = Path(tmp) / "tritonserver.log"
        (Path(tmp) / "backends").mkdir()
        command = [
            str(binary), f"--model-repository={repository}", "--disable-auto-complete-config",
            "--exit-on-error=false", "--allow-metrics=false", f"--backend-directory={Path(tmp) / 'backends'}",
            "--http-address=127.0.0.1", f"--http-port={_free_port()}",
            "--grpc-address=127.0.0.1", f"--grpc-port={_free_port()}",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)  # fmt: skip
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
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)  # our own session's group
                    process.wait(timeout=10)
        missing = [n for n in names if n not in verdicts]
        if missing:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise BackendUnavailableError(
                f"tritonserver gave no verdict on {missing} within {timeout_s:.0f} s:\n{tail}"
            )
    return verdicts


# --------------------------------------------------------------------------- the server process


def _use_matching_libpython() -> None:
    """Let Triton's Python-backend stub load this interpreter's libpython.

    The stub links ``libpython3.X.so``; the loader would otherwise find the system's
    (e.g. Debian's 3.11.2) while the standard library is this interpreter's (e.g.
    pyenv's 3.11.7), and the stub fails inside ``multiprocessing``.
    """
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and library and (Path(libdir) / library).exists():
        current = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = libdir + (os.pathsep + current if current else "")


def main(argv: list[str] | None = None) -> None:
    """Serve one ONNX file behind Triton until SIGINT/SIGTERM or until the parent process goes away."""
    parser = argparse.ArgumentParser(prog="python -m sbdeploy.serve.pytriton_server", description=main.__doc__)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--model-name", default="sbdeploy")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--queue-delay-us", type=int, default=100)
    parser.add_argument("--preferred-batch", type=int, action="append", default=[])
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args(argv)

    _use_matching_libpython()
    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from sbdeploy.backends.ort import OrtRunner
    from sbdeploy.files import describe_file

    spec = describe_file(args.onnx)

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
        http_address="127.0.0.1", http_port=args.http_port,
        grpc_address="127.0.0.1", grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, allow_metrics=False, exit_timeout_secs=10,
    )  # fmt: skip
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    parent = os.getppid()
    with contextlib.ExitStack() as stack:
        runners = [
            stack.enter_context(OrtRunner(args.onnx, provider="cpu", threads=args.threads))
            for _ in range(args.instances)
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
            model_name=args.model_name,
            infer_func=[make_infer(r) for r in runners],
            inputs=tensors(spec.inputs),
            outputs=tensors(spec.outputs),
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=args.queue_delay_us,
                    preferred_batch_size=args.preferred_batch or None,
                ),
            ),
            strict=True,
        )
        triton.run()
        print(f"serving {args.onnx} as {args.model_name!r} on http {args.http_port}, grpc {args.grpc_port}", flush=True)
        while not stop and os.getppid() == parent and triton.is_alive():
            time.sleep(0.2)


if __name__ == "__main__":
    main()
