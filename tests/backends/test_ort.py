"""The ONNX Runtime runner on the CPU provider, for real; refusals for the providers this machine lacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from sbdeploy import environment
from sbdeploy.backends.ort import OrtRunner, OrtTensorrtOptions, SessionSettings, file_session_settings
from sbdeploy.errors import BackendUnavailableError, ConfigError, InputError, OnnxModelError
from tests.conftest import run_cli


@pytest.mark.parametrize("batch", [1, 5])
def test_cpu_matches_torch(sb_model: nn.Module, sb_onnx: Path, batch: int) -> None:
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    with OrtRunner(sb_onnx, threads=1) as runner:
        out = runner.infer({"input": x})
    with torch.no_grad():
        expected = sb_model(torch.from_numpy(x)).numpy()
    assert list(out) == ["logits"] and out["logits"].shape == (batch, 10)
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-4)


def test_specs_come_from_the_session(sb_onnx: Path) -> None:
    with OrtRunner(sb_onnx) as runner:
        assert [s.describe() for s in runner.input_specs()] == ["input: ?x3x32x32 float32"]
        assert [s.describe() for s in runner.output_specs()] == ["logits: ?x10 float32"]
        assert runner.name == "ort-cpu"
        with pytest.raises(InputError, match="dtype float16"):
            runner.infer({"input": np.zeros((1, 3, 32, 32), np.float16)})
        with pytest.raises(InputError, match="shape 1x3x28x28"):
            runner.infer({"input": np.zeros((1, 3, 28, 28), np.float32)})


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x07\x12\x03abc\xff\xff"])
def test_corrupt_file_is_an_onnx_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxModelError, match="corrupt or not an ONNX model"):
        with OrtRunner(path):
            pass


def test_truncated_model_is_an_onnx_error(sb_onnx: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.onnx"
    path.write_bytes(sb_onnx.read_bytes()[: sb_onnx.stat().st_size // 2])
    with pytest.raises(OnnxModelError):
        with OrtRunner(path):
            pass


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OnnxModelError, match="does not exist"):
        with OrtRunner(tmp_path / "nope.onnx"):
            pass


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_missing_provider_is_refused(sb_onnx: Path, provider: str) -> None:
    from sbdeploy.backends.ort import PROVIDERS

    if PROVIDERS[provider] in onnxruntime.get_available_providers():
        pytest.skip(f"{PROVIDERS[provider]} is available here")
    with pytest.raises(BackendUnavailableError, match=f"no {PROVIDERS[provider]}.*ort-cpu"):
        with OrtRunner(sb_onnx, provider=provider):
            pass


def _with_metadata(source: Path, path: Path, **entries: str) -> Path:
    import onnx

    model = onnx.load(str(source))
    for key, value in entries.items():
        model.metadata_props.add(key=f"sbdeploy.{key}", value=value)
    onnx.save(model, str(path))
    return path


def test_the_file_carries_its_session_settings(sb_onnx: Path, tmp_path: Path) -> None:
    tuned = SessionSettings(intra_op_threads=1, spinning=False, optimization="extended", threads=2)
    path = _with_metadata(sb_onnx, tmp_path / "tuned.onnx", ort_session=json.dumps(tuned.to_dict()))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with OrtRunner(sb_onnx) as plain:
        assert plain.session_settings == SessionSettings.default() and not plain.notes
        expected = plain.infer({"input": x})["logits"]
    for threads in (None, 2):  # no thread count, or the budget it was tuned for: the file's settings
        with OrtRunner(path, threads=threads) as runner:
            assert runner.session_settings == tuned and not runner.notes
            np.testing.assert_allclose(runner.infer({"input": x})["logits"], expected, rtol=1e-5, atol=1e-5)
    with OrtRunner(path, threads=1) as runner:  # another budget: plain threads, and the report says so
        assert runner.session_settings == SessionSettings.default(1)
        assert runner.notes == [
            "tuned.onnx was tuned for 2 threads (1 intra-op thread, no spinning, graph optimization extended); "
            "run with 1 intra-op threads instead"
        ]
    given = SessionSettings(intra_op_threads=2, execution_mode="parallel", inter_op_threads=2)
    with OrtRunner(path, session=given) as runner:  # settings given to the runner win
        assert runner.session_settings == given
    assert SessionSettings.from_dict(tuned.to_dict()) == tuned


@pytest.mark.parametrize(
    "value", ["{not json", '{"intra_op_threads": 0}', '{"threads": 2, "magic": 1}', '{"optimization": "max"}']
)
def test_unreadable_session_settings_are_an_onnx_error(sb_onnx: Path, tmp_path: Path, value: str) -> None:
    path = _with_metadata(sb_onnx, tmp_path / "bad.onnx", ort_session=value)
    with pytest.raises(OnnxModelError, match="sbdeploy.ort_session metadata is not valid.*re-export it"):
        with OrtRunner(path):
            pass


def test_thread_counts_from_a_file_are_lowered_to_the_cpus_this_process_may_use() -> None:
    asked = SessionSettings(intra_op_threads=64, execution_mode="parallel", inter_op_threads=3, threads=64)
    assert asked.bounded(2) == (
        SessionSettings(intra_op_threads=2, execution_mode="parallel", inter_op_threads=2, threads=64),
        ["64 intra-op threads", "3 inter-op threads"],
    )  # the budget it was tuned for stays as it was: it is a record, never applied
    assert SessionSettings(intra_op_threads=2).bounded(2) == (SessionSettings(intra_op_threads=2), [])
    cpus, notes = environment.available_cpus(), []
    raw = {"sbdeploy.ort_session": json.dumps({"intra_op_threads": 10**6})}
    assert file_session_settings(raw, "big.onnx", notes) == SessionSettings(intra_op_threads=cpus)
    assert notes == [
        f"big.onnx asks for 1000000 intra-op threads; this process may use {cpus} CPUs, so it ran with {cpus}"
    ]


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX file that ``sbdeploy bench`` takes (sbdeploy metadata, batch 1)."""
    from sbdeploy.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("bench") / "net.onnx"
    export_onnx("cifar_resnet20", path, input_size=(16, 16), target="ort-cpu", batch=1)
    return path


@pytest.mark.parametrize(
    "settings, exit_code, said",
    [
        ('{"intra_op_threads": 1000000}', 0, "net.onnx asks for 1000000 intra-op threads; this process may use"),
        ('{"intra_op_threads": "4"}', 2, "intra_op_threads must be a positive integer or None, got '4'"),
        ("{not json", 2, "sbdeploy.ort_session metadata is not valid (Expecting property name"),
    ],
    ids=["a-million-threads", "threads-as-text", "not-json"],
)
def test_bench_of_a_file_with_untrusted_session_settings(
    bench_file: Path, tmp_path: Path, settings: str, exit_code: int, said: str
) -> None:
    """Issue 24: such a file stalled the machine. A run with the threads lowered and a note, or one error line, in
    seconds (the subprocess's timeout is the hang check)."""
    path = _with_metadata(bench_file, tmp_path / "net.onnx", ort_session=settings)
    result = run_cli("bench", "-m", str(path), *"--warmup 1 --iters 20 --json".split(), timeout=120)
    assert result.returncode == exit_code, result.stdout + result.stderr
    if exit_code == 0:
        notes = json.loads(result.stdout)["settings"]["notes"]
        assert any(said in note for note in notes), notes
    else:
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert said in result.stderr and "re-export it" in result.stderr


def test_option_checks() -> None:
    with pytest.raises(ConfigError, match="unknown ONNX Runtime provider"):
        OrtRunner("m.onnx", provider="openvino")
    with pytest.raises(ConfigError, match="threads"):
        OrtRunner("m.onnx", threads=0)
    with pytest.raises(ConfigError, match="threads or session settings, not both"):
        OrtRunner("m.onnx", threads=2, session=SessionSettings())
    with pytest.raises(ConfigError, match="execution_mode must be one of sequential, parallel"):
        SessionSettings(execution_mode="async")  # type: ignore[arg-type]
    assert SessionSettings(intra_op_threads=1, execution_mode="parallel", inter_op_threads=2).describe() == (
        "1 intra-op thread, parallel executor (2 inter-op), spinning"
    )


def test_tensorrt_provider_fp16_flag_needs_tensorrt_10() -> None:
    """trt_fp16_enable is TensorRT 10.x's weak-typing builder flag, which TensorRT 11 removed: refused there."""
    options = OrtTensorrtOptions(fp16=True)
    assert options.provider_options(tensorrt_major=10) == {
        "trt_fp16_enable": "True",
        "trt_builder_optimization_level": "3",
    }
    with pytest.raises(ConfigError, match="TensorRT 11.*strongly typed.*fp16 ONNX"):
        options.provider_options(tensorrt_major=11)
    assert (
        OrtTensorrtOptions().provider_options(tensorrt_major=11)["trt_fp16_enable"] == "False"
    )  # an fp16 ONNX needs no flag


def _tensorrt_here(monkeypatch: pytest.MonkeyPatch, version: str | None) -> None:
    """Make environment.gpu_stack() report TensorRT ``version`` (None: none), as the TensorRT provider's options read it."""
    import dataclasses

    from sbdeploy import environment

    stack = dataclasses.replace(environment.gpu_stack(), tensorrt=version)
    monkeypatch.setattr(environment, "gpu_stack", lambda: stack)


@pytest.mark.filterwarnings("ignore:Specified provider")  # this CPU build has no GPU provider
@pytest.mark.parametrize("provider", ["cpu", "cuda", "tensorrt"])
def test_sessions_are_opened_with_use_tf32_0_on_the_cuda_provider(
    sb_onnx: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """ONNX Runtime's CUDA provider defaults to use_tf32=1 (TF32 convolutions and GEMMs on Ampere+); sbdeploy's
    ort-cuda files are judged by the strict fp32 tolerance, so every session it opens passes use_tf32=0, also to
    the CUDA fallback of the TensorRT provider. Checked on what the real session is asked for: this CPU build
    cannot start a GPU provider, falls back to the CPU, and the runner refuses that fallback."""
    from sbdeploy.backends.ort import PROVIDERS

    asked = []
    real_session = onnxruntime.InferenceSession

    def session(path: str, sess_options: object = None, providers: list | None = None) -> object:
        asked.append(providers)
        return real_session(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [PROVIDERS[provider], "CPUExecutionProvider"])
    _tensorrt_here(monkeypatch, "10.13.0.35")
    if provider == "cpu":
        with OrtRunner(sb_onnx, provider=provider):
            pass
    else:
        with pytest.raises(BackendUnavailableError, match=f"could not start {PROVIDERS[provider]}"):
            with OrtRunner(sb_onnx, provider=provider):
                pass
    (providers,) = asked
    options = dict(p if isinstance(p, tuple) else (p, {}) for p in providers)
    in_order = {
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    }
    assert list(options) == in_order[provider]
    assert provider == "cpu" or options["CUDAExecutionProvider"] == {"use_tf32": "0"}


@pytest.mark.parametrize(
    ("version", "fp16_model", "flag"),
    [
        ("10.13.0.35", True, "True"),  # weakly typed: without the flag TensorRT 10 would compute the fp16 ONNX in fp32
        ("10.13.0.35", False, "False"),
        ("11.4.0.106", True, "False"),  # strongly typed: the model's types decide, and 11.x has no FP16 flag
        (None, True, "False"),  # no TensorRT python package to tell the version: the flag is not guessed
    ],
)
def test_tensorrt_provider_gets_the_fp16_flag_for_an_fp16_onnx_on_10x(
    sb_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str | None, fp16_model: bool, flag: str
) -> None:
    import onnx

    from sbdeploy.passes import to_fp16

    model = sb_onnx
    if fp16_model:
        model = tmp_path / "sb.fp16.onnx"
        onnx.save(to_fp16(onnx.load(str(sb_onnx))), str(model))
    _tensorrt_here(monkeypatch, version)
    runner = OrtRunner(model, provider="tensorrt")
    first = runner.providers()[0]
    assert isinstance(first, tuple) and first[1]["trt_fp16_enable"] == flag
    from sbdeploy.backends.ort import UNKNOWN_TRT_FP16

    assert runner.notes == ([UNKNOWN_TRT_FP16] if version is None else [])  # the report says the flag was not guessed
    explicit_off = OrtRunner(model, provider="tensorrt", trt_options=OrtTensorrtOptions(fp16=False)).providers()[0]
    assert isinstance(explicit_off, tuple) and explicit_off[1]["trt_fp16_enable"] == "False"  # a given setting is kept


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_providers_need_an_onnxruntime_with_use_tf32(
    sb_onnx: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Before onnxruntime 1.18 the CUDA provider has no use_tf32 (its fp32 would be TF32): refused with what to install."""
    from sbdeploy.backends.ort import PROVIDERS

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [PROVIDERS[provider], "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "__version__", "1.17.3")
    with pytest.raises(BackendUnavailableError, match=r"1\.17\.3.*use_tf32.*onnxruntime-gpu>=1\.18"):
        with OrtRunner(sb_onnx, provider=provider):
            pass
