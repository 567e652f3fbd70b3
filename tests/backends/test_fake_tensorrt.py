"""The stand-in for TensorRT (fake_tensorrt.py) uses only names the real TensorRT has, in 10.13 and in 11.4.

Each of its classes stands for a real one; every public method and attribute it defines
must exist on that class in both stub sets, so the CPU tests built on it cannot pass on
an API TensorRT does not have.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from tests.backends import fake_tensorrt

ROOT = Path(__file__).resolve().parents[2]
STANDS_FOR = {
    "_Tensor": "ITensor",
    "_Network": "INetworkDefinition",
    "_ParserError": "ParserError",
    "_TimingCache": "ITimingCache",
    "_Profile": "IOptimizationProfile",
    "_Config": "IBuilderConfig",
    "_Inspector": "EngineInspector",
    "_Context": "IExecutionContext",
    "_Engine": "ICudaEngine",
}
TEST_KNOBS = {"errors"}  # OnnxParser.errors: what a test makes parse() report, not an API
ONLY_IN_10 = {("BuilderFlag", "FP16")}  # the 10.x-only route's flag (guarded by TENSORRT_10_API)


def _classes(path: Path) -> dict[str, set[str]]:
    text = re.sub(r"(def \w+\([^)]*?)\bin: ", r"\1in_: ", path.read_text())
    text = re.sub(r"(power: Weights = None, channel_axis: [\w.]+)\)", r"\1 = ...)", text)
    out: dict[str, set[str]] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {
                getattr(b, "name", None) or getattr(getattr(b, "target", None), "id", "") for b in node.body
            }
    return out


def _stub_sets() -> dict[str, dict[str, set[str]]]:
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.skip("tensorrt-stubs is installed by scripts/setup.sh")
    site = Path(spec.origin).parent.parent
    return {
        "10.13": _classes(site / "tensorrt_bindings" / "tensorrt.pyi"),
        "11.4": _classes(ROOT / "tests" / "data" / "tensorrt_11_4_stubs" / "tensorrt_bindings" / "tensorrt.pyi"),
    }


def _fake_members() -> dict[str, set[str]]:
    members: dict[str, set[str]] = {}
    for name, obj in vars(fake_tensorrt).items():
        if not inspect.isclass(obj) or obj.__module__ != fake_tensorrt.__name__:
            continue
        real = STANDS_FOR.get(name, name)
        if real.startswith("_"):
            continue
        own = set(vars(obj)) | (set(obj.__members__) if hasattr(obj, "__members__") else set())
        members[real] = {m for m in own if not m.startswith("_") and m not in TEST_KNOBS}
    return members


@pytest.mark.parametrize("version", ["10.13", "11.4"])
def test_every_name_of_the_stand_in_is_tensorrts(version: str) -> None:
    stubs = _stub_sets()[version]
    missing = []
    for real, names in _fake_members().items():
        if real not in stubs:
            missing.append(real)
            continue
        missing += [
            f"{real}.{n}"
            for n in sorted(names)
            if n not in stubs[real] and not (version == "11.4" and (real, n) in ONLY_IN_10)
        ]
    assert not missing, f"fake_tensorrt uses names TensorRT {version} lacks: {missing}"
