"""The TensorRT code against fixtures taken from NVIDIA's documentation and from real runs (tests/data/tensorrt).

Each fixture names its source. Checked on them: the precision read-back and the I/O
tensor names for both engine-inspector schemas (TensorRT 10.x ``Bindings`` and
``Format/Datatype``; 11.x ``I/O Tensors`` and the split ``Format``/``Datatype``), the
parser error listing, the reading of TensorRT's deserialization refusals (version and
compute capability), and the sidecar's compatibility rules from TensorRT's
version-compatibility documentation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sbdeploy.backends.tensorrt.builder import format_parser_errors, precisions_from_layer_info
from sbdeploy.backends.tensorrt.sidecar import EngineSidecar, MachineInfo, check_compatible, read_load_failure
from sbdeploy.errors import EngineMismatchError

DATA = Path(__file__).resolve().parents[1] / "data" / "tensorrt"


def fixture(name: str) -> dict:
    data = json.loads((DATA / name).read_text())
    assert data["_source"], f"{name} must name its source"
    return data


@pytest.mark.parametrize("name", ["inspector_10x.json", "inspector_11x.json"])
def test_precision_read_back_on_both_inspector_schemas(name: str) -> None:
    data = fixture(name)
    info = data["engine_information"]
    assert precisions_from_layer_info(json.dumps(info)) == data["expected"]["precisions"]
    assert precisions_from_layer_info(info) == data["expected"]["precisions"]  # a dict or its JSON text


def test_the_11x_schema_is_not_read_as_unknown() -> None:
    """The 10.x-only reading counted every 11.x layer "unknown": the 11.x fixture has none."""
    counts = precisions_from_layer_info(fixture("inspector_11x.json")["engine_information"])
    assert "unknown" not in counts and sum(counts.values()) == 4


def test_layer_names_only_verbosity() -> None:
    assert precisions_from_layer_info({"Layers": ["conv1", "conv2"], "Bindings": ["input", "logits"]}) == {"unknown": 2}


def test_parser_errors_from_real_runs() -> None:
    data = fixture("parser_errors.json")
    errors = [(e["node"], e["node_name"], e["node_operator"], e["desc"]) for e in data["errors"]]
    lines = format_parser_errors(errors, Path("model.onnx")).splitlines()
    assert lines[0] == "TensorRT's ONNX parser rejected model.onnx (3 errors):"
    assert lines[1:4] == data["expected_lines"]
    assert "operators.md" in lines[-1]


@pytest.mark.parametrize(
    "case", fixture("load_errors.json")["cases"], ids=lambda c: c["source"].split()[0].rstrip(":")[-24:]
)
def test_deserialization_refusals_are_read(case: dict) -> None:
    failure = read_load_failure(case["log"])
    if case["expected"] is None:
        assert failure is None
        return
    assert failure is not None
    assert (failure.kind, failure.engine, failure.here) == (
        case["expected"]["kind"],
        case["expected"]["engine"],
        case["expected"]["here"],
    )
    assert (
        f"built for {failure.kind} {failure.engine}" in failure.describe()
        and f"this machine has {failure.here}" in failure.describe()
    )


def test_the_runners_message_names_both_sides_and_the_fix() -> None:
    from sbdeploy.backends.tensorrt.runner import load_refusal

    (case,) = [c for c in fixture("load_errors.json")["cases"] if "insightface/issues/2882" in c["source"]]
    message = load_refusal(Path("engines/m.engine"), "10.8.0.43", case["log"])
    assert message == (
        "TensorRT 10.8.0.43 cannot load engines/m.engine: the engine was built for compute capability 8.6, but this machine "
        "has 8.9; rebuild it here with sbdeploy build-engine MODEL.onnx -o engines/m.engine"
    )
    unknown = load_refusal(Path("m.engine"), "11.4.0.106", ["[ERROR] something else"])
    assert "something else" in unknown and "version-compatible without its sidecar" in unknown


# ---- compatibility rules (NVIDIA: "Engine Compatibility" 11.1, "Support Matrix" 11.4 "Engine Portability") ------------

BUILT = MachineInfo("10.13.0.35", "NVIDIA A100-SXM4-80GB", "8.0", "12.8", "12.9")


def _sidecar(engine: Path, built: MachineInfo = BUILT, **builder_options: object) -> EngineSidecar:
    return EngineSidecar(
        built_on=built,
        requested_precision="fp32",
        actual_precisions={"fp32": 3},
        profiles=[],
        builder_options=dict(builder_options),
        onnx_sha256="0" * 64,
        engine_sha256="1" * 64,
        build_time_s=1.0,
    )


@pytest.mark.parametrize(
    ("built", "here", "ok"),
    [
        ("10.13.0.35", "10.13.0.35", True),
        ("10.13.0.35", "10.13.0.99", False),  # another build number: TensorRT compares the full version
        ("10.13.0.35", "10.13.1.35", False),
        ("10.13.0.35", "11.4.0.106", False),
    ],
)
def test_plain_engines_need_the_exact_tensorrt_version(tmp_path: Path, built: str, here: str, ok: bool) -> None:
    sidecar = _sidecar(tmp_path / "m.engine", replace(BUILT, tensorrt_version=built))
    check = lambda: check_compatible(tmp_path / "m.engine", sidecar, replace(BUILT, tensorrt_version=here))  # noqa: E731
    if ok:
        check()
    else:
        with pytest.raises(
            EngineMismatchError,
            match=f"TensorRT {built}.*TensorRT {here}.*only on the TensorRT version that built them",
        ):
            check()


@pytest.mark.parametrize(
    ("built", "here", "ok"),
    [
        ("10.13.0.35", "10.13.0.35", True),
        ("10.13.0.35", "10.16.1.11", True),  # later 10.x
        (
            "10.13.0.35",
            "11.4.0.106",
            True,
        ),  # "TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime"
        ("11.0.0.114", "11.4.0.106", True),  # "compatible with TensorRT 11.1 and later 11.x versions"
        ("10.13.0.35", "10.12.0.36", False),  # older runtime
        ("11.0.0.114", "10.16.1.11", False),  # newer major on an older runtime
    ],
)
def test_version_compatible_engines_follow_tensorrts_rule(tmp_path: Path, built: str, here: str, ok: bool) -> None:
    sidecar = _sidecar(tmp_path / "m.engine", replace(BUILT, tensorrt_version=built), version_compatible=True)
    check = lambda: check_compatible(tmp_path / "m.engine", sidecar, replace(BUILT, tensorrt_version=here))  # noqa: E731
    if ok:
        check()
    else:
        with pytest.raises(
            EngineMismatchError, match="version-compatible engine runs on the TensorRT that built it or a newer one"
        ):
            check()


def test_version_compatible_is_still_tied_to_the_compute_capability(tmp_path: Path) -> None:
    sidecar = _sidecar(tmp_path / "m.engine", version_compatible=True)
    with pytest.raises(EngineMismatchError, match="compute capability"):
        check_compatible(
            tmp_path / "m.engine", sidecar, replace(BUILT, tensorrt_version="11.4.0.106", compute_capability="9.0")
        )
