"""sbdeploy's TensorRT code against the TensorRT 11.4 API per class and signature, not a flat list of names.

tests/data/tensorrt_11_4_stubs holds stubs generated from the real TensorRT 11.4 bindings
(``tensorrt-cu13-bindings==11.4.0.106``) by scripts/extract_trt_api.py; scripts/typecheck.sh
type-checks the backend against them and against the 10.13 stubs (tests/backends/test_typecheck.py).
Here: the stubs say what the issue's examples need them to say (per class: a member removed
from one class but kept in another; a signature change), the 10.x-only lines are exactly the
ones TensorRT 11.4 rejects (so the ``TENSORRT_10_API`` switch is needed and sufficient), and
the stubs' provenance matches the extraction script.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is a dev dependency")
pytest.importorskip("tensorrt_stubs", reason="tensorrt-stubs is installed by scripts/setup.sh")

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tests" / "data" / "tensorrt_11_4_stubs" / "tensorrt_bindings" / "tensorrt.pyi"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")

# Uses of TensorRT that differ between 10.13 and 11.4 per class and per signature.
PROBE = """
import tensorrt as trt

def implicit_batch(engine: trt.ICudaEngine, network: trt.INetworkDefinition) -> tuple[object, object]:
    return network.has_implicit_batch_dimension, engine.has_implicit_batch_dimension  # line 5: gone from ICudaEngine only

class Monitor(trt.IProgressMonitor):
    def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:  # line 8: 11.4 passes SupportsInt
        pass

def calibrated(config: trt.IBuilderConfig) -> object:
    return config.int8_calibrator  # line 12: INT8 calibration is gone in 11.x
"""


def _prepare(version: str, out: Path) -> Path:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prepare_trt_stubs.py"), str(out), "--tensorrt", version], check=True
    )
    return out


def _mypy(stubs: Path, *targets: str, cwd: Path = ROOT, extra: tuple[str, ...] = ()) -> list[tuple[str, int, str]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--follow-imports=silent",
            "--no-incremental",
            *extra,
            *targets,
        ],
        cwd=cwd,
        env={**os.environ, "MYPYPATH": f"{stubs}:{ROOT / 'typings'}"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [(m["file"], int(m["line"]), m["message"]) for m in map(ERROR.match, result.stdout.splitlines()) if m]
    assert errors or result.returncode == 0, result.stdout + result.stderr
    return errors


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trt_stubs")
    return {v: _prepare(v, root / v) for v in ("10", "11")}


@pytest.mark.slow  # mypy runs
def test_per_class_members_and_signatures(stubs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    assert _mypy(stubs["10"], "probe.py", cwd=tmp_path) == []
    lines = {line: message for _, line, message in _mypy(stubs["11"], "probe.py", cwd=tmp_path)}
    assert sorted(lines) == [5, 8, 12], lines
    assert '"ICudaEngine" has no attribute "has_implicit_batch_dimension"' in lines[5]  # INetworkDefinition keeps it
    assert "phase_start" in lines[8] and "SupportsInt" in lines[8]
    assert '"IBuilderConfig" has no attribute "int8_calibrator"' in lines[12]


@pytest.mark.slow  # mypy runs
def test_the_10x_switch_guards_exactly_the_names_tensorrt_11_removed(stubs: dict[str, Path]) -> None:
    """Without --always-false TENSORRT_10_API, mypy against 11.4 flags the guarded 10.x lines, and only them."""
    errors = _mypy(stubs["11"], "sbdeploy/backends/tensorrt")
    assert errors, "the 10.x FP16-flag route uses BuilderFlag.FP16, which TensorRT 11.4 lacks"
    for file, line, message in errors:
        source = (ROOT / file).read_text().splitlines()
        guard = next(s for s in reversed(source[: line - 1]) if s.strip().startswith(("if ", "def ")))
        assert guard.strip() == "if TENSORRT_10_API:" and 'has no attribute "FP16"' in message, (file, line, message)


def test_stubs_record_tensorrt_11s_api() -> None:
    classes = {n.name: n for n in ast.parse(STUBS.read_text()).body if isinstance(n, ast.ClassDef)}

    def members(name: str) -> set[str]:
        return {
            getattr(b, "name", None) or b.target.id
            for b in classes[name].body
            if isinstance(b, (ast.FunctionDef, ast.AnnAssign))
        }  # type: ignore[union-attr]

    assert {"TF32", "VERSION_COMPATIBLE"} <= members("BuilderFlag") and not {"FP16", "INT8", "BF16"} & members(
        "BuilderFlag"
    )
    assert "STRONGLY_TYPED" in members("NetworkDefinitionCreationFlag") and "EXPLICIT_BATCH" not in members(
        "NetworkDefinitionCreationFlag"
    )
    assert "engine_host_code_allowed" in members("Runtime") and "__buffer__" in members("IHostMemory")
    parse = next(b for b in classes["OnnxParser"].body if isinstance(b, ast.FunctionDef) and b.name == "parse")
    assert [a.arg for a in parse.args.args] == ["self", "model", "path"]


def test_provenance_matches_the_extraction_script() -> None:
    spec = importlib.util.spec_from_file_location("extract_trt_api", ROOT / "scripts" / "extract_trt_api.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    header = STUBS.read_text().splitlines()[:2]
    assert (
        script.WHEEL_NAME in header[0] and f"sha256 {script.WHEEL_SHA256}" in header[0] and script.STUBGEN in header[1]
    )
