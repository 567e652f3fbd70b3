"""triton_repo: configs from artifacts, checked with Triton's own ModelConfig protobuf and Triton's rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sbdeploy.backends.tensorrt.sidecar import sidecar_path
from sbdeploy.errors import ArtifactError, ConfigError, EngineMismatchError, OnnxModelError
from sbdeploy.serve.triton_repo import TritonOptions, check_model_config, write_triton_repo
from tests.serve._artifacts import export_resnet20, fake_engine, tiny_onnx

pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient absent: pip install sbdeploy[serve]"
)


@pytest.fixture(scope="module")
def resnet20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_resnet20(tmp_path_factory.mktemp("onnx") / "cifar_resnet20_sb.onnx")


def parse(folder: Path):
    return check_model_config((folder / "config.pbtxt").read_text())


def test_onnx_model_folder_matches_the_graph(resnet20: Path, tmp_path: Path) -> None:
    options = TritonOptions(instances=2, preferred_batch=(4, 8), queue_delay_us=250)
    repo = write_triton_repo([resnet20], tmp_path / "repo", options=options)
    (model,) = repo.models
    assert repo.validated_with and "tritonclient" in repo.validated_with
    folder = tmp_path / "repo" / "cifar_resnet20_sb"
    assert model.folder == folder and (folder / "1" / "model.onnx").read_bytes() == resnet20.read_bytes()
    config = parse(folder)
    graph = onnx.load(str(resnet20)).graph
    assert config.name == "cifar_resnet20_sb" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    # Names and non-batch dims straight from the graph.
    for ours, theirs in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in ours] == [t.name for t in theirs]
        for t, v in zip(ours, theirs):
            assert list(t.dims) == [d.dim_value for d in v.type.tensor_type.shape.dim[1:]]
            assert t.data_type == pb2.TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, pb2.ModelInstanceGroup.KIND_CPU)]
    assert sorted(w.batch_size for w in config.model_warmup) == [1, 32]
    assert all(
        list(w.inputs["input"].dims) == [3, 32, 32] and w.inputs["input"].random_data for w in config.model_warmup
    )
    assert "cifar_resnet20_sb.onnx" in (folder / "README.md").read_text()
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["cifar_resnet20_sb"]  # no temp folders left


def test_onnx_tensorrt_fp16_accelerator(tmp_path: Path) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx", fp16=True)
    write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(onnx_trt_fp16=True, max_batch=8))
    config = parse(tmp_path / "repo" / "tiny")
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and dict(accelerator.parameters) == {"precision_mode": "FP16"}
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    assert config.max_batch_size == 8 and list(config.input[0].dims) == [3, 8, 8]


def test_onnx_tensorrt_fp16_needs_an_fp16_onnx(tmp_path: Path) -> None:
    """precision_mode FP16 sets TensorRT 10.x's FP16 builder flag, which TensorRT 11 removed: an fp32 ONNX would stay fp32."""
    with pytest.raises(ConfigError, match="fp32 weights.*TensorRT 11.*fp16 ONNX"):
        write_triton_repo(
            [tiny_onnx(tmp_path / "tiny.onnx")], tmp_path / "repo", options=TritonOptions(onnx_trt_fp16=True)
        )
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_engine_uses_sidecar_and_profile(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path / "r20.engine", [(1, 8, 16)], version="10.13.0.35")
    repo = write_triton_repo([engine], tmp_path / "repo", name="r20_trt")
    folder = repo.models[0].folder
    config = parse(folder)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 16  # the profile's max
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    assert (folder / "1" / "model.plan").read_bytes() == engine.read_bytes()
    readme = (folder / "README.md").read_text()
    assert "TensorRT version: **10.13.0.35**" in readme and "NVIDIA L4 (compute capability 8.9)" in readme
    assert sorted(w.batch_size for w in config.model_warmup) == [1, 16]


@pytest.mark.parametrize(
    ("profiles", "covered"),
    [([(1, 4, 8)], 8), ([(1, 2, 4), (5, 8, 16)], 16), ([(1, 2, 4), (8, 8, 16)], 4), ([(2, 4, 8), (1, 1, 1)], 8)],
)
def test_max_batch_is_what_the_profiles_cover_from_one(tmp_path: Path, profiles, covered: int) -> None:
    engine = fake_engine(tmp_path / "m.engine", profiles)
    assert write_triton_repo([engine], tmp_path / "repo").models[0].max_batch_size == covered
    with pytest.raises(ConfigError, match=f"1..{covered}"):
        write_triton_repo([engine], tmp_path / "repo2", options=TritonOptions(max_batch=covered + 1))
    assert not (tmp_path / "repo2").exists()  # refused before anything was written


def test_engine_profile_not_starting_at_one_is_refused(tmp_path: Path) -> None:
    engine = fake_engine(tmp_path / "m.engine", [(4, 8, 16)])
    with pytest.raises(ConfigError, match="batch 1"):
        write_triton_repo([engine], tmp_path / "repo")
    config = parse(write_triton_repo([engine], tmp_path / "repo", options=TritonOptions(max_batch=0)).models[0].folder)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 3, 32, 32]  # with max_batch_size 0 the dims carry the batch


def test_fixed_batch_onnx_cannot_be_batched(tmp_path: Path) -> None:
    onnx_path = tiny_onnx(tmp_path / "fixed4.onnx", batch=4)
    with pytest.raises(ConfigError, match="fixed batch of 4"):
        write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(max_batch=4))
    model = write_triton_repo([onnx_path], tmp_path / "repo").models[0]
    config = parse(model.folder)
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 3, 8, 8]
    assert not config.HasField("dynamic_batching") and any("no dynamic batching" in n for n in model.notes)
    assert config.model_warmup[0].batch_size == 1 and list(config.model_warmup[0].inputs["input"].dims) == [4, 3, 8, 8]


def test_existing_folder_needs_force(tmp_path: Path) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(max_batch=4))
    with pytest.raises(ConfigError, match="--force"):
        write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(max_batch=8))
    assert parse(tmp_path / "repo" / "tiny").max_batch_size == 4
    write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(max_batch=8), force=True)
    assert parse(tmp_path / "repo" / "tiny").max_batch_size == 8
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["tiny"]


def test_bad_artifacts_are_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(OnnxModelError, match="not a readable ONNX"):
        write_triton_repo([corrupt], tmp_path / "repo")
    engine = fake_engine(tmp_path / "m.engine", [(1, 1, 8)])
    engine.write_bytes(b"another engine")  # the sidecar now describes a different file
    with pytest.raises(EngineMismatchError, match="does not match its sidecar"):
        write_triton_repo([engine], tmp_path / "repo")
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="not valid JSON"):
        write_triton_repo([engine], tmp_path / "repo")
    sidecar_path(engine).write_text('{"format": "something-else"}')
    with pytest.raises(EngineMismatchError, match="not an sbdeploy engine sidecar"):
        write_triton_repo([engine], tmp_path / "repo")
    sidecar_path(engine).unlink()
    with pytest.raises(ArtifactError, match="sidecar .* is missing"):
        write_triton_repo([engine], tmp_path / "repo")
    with pytest.raises(ArtifactError, match="unknown artifact type"):
        write_triton_repo([Path(__file__)], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_bad_options_are_refused(tmp_path: Path) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ConfigError, match="preferred"):
        write_triton_repo([onnx_path], tmp_path / "r", options=TritonOptions(max_batch=4, preferred_batch=(8,)))
    with pytest.raises(ConfigError, match="folder"):
        write_triton_repo([onnx_path], tmp_path / "r", name="bad/name")
    with pytest.raises(ConfigError, match="same model name"):
        write_triton_repo([onnx_path, onnx_path], tmp_path / "r")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("max_batch_size: 8", "max_batch_size: 8\nnot_a_field: 1"), "does not parse"),
        (lambda t: t.replace("TYPE_FP32", "TYPE_FLOAT32", 1), "does not parse"),
        (lambda t: t.replace("dims: [ 10 ]", "dims: [ 0 ]"), "-1 or positive"),
        (
            lambda t: t.replace("max_queue_delay_microseconds: 100", "preferred_batch_size: [ 9 ]"),
            "preferred_batch_size 9",
        ),
        (lambda t: t.replace("\n  batch_size: 8", "\n  batch_size: 9"), "warm-up"),
        (lambda t: t.replace("max_batch_size: 8", "max_batch_size: 0"), "dynamic_batching needs"),
        (lambda t: t.replace("onnxruntime_onnx", "tensorrt_plan"), "KIND_GPU"),
        (
            lambda t: t.replace("dims: [ 3, 8, 8 ]\n      random_data", "dims: [ 3, 8, 7 ]\n      random_data"),
            "do not fit",
        ),
    ],
)
def test_check_model_config_catches_what_triton_refuses(tmp_path: Path, edit, problem: str) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    text = write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(max_batch=8)).models[0].config_text
    check_model_config(text)  # the generated one passes
    edited = edit(text)
    assert edited != text
    with pytest.raises(ConfigError, match=problem):
        check_model_config(edited)


def test_copied_onnx_runs_like_the_original(resnet20: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    model = write_triton_repo([resnet20], tmp_path / "repo", name="r20").models[0]
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_array_equal(run(model.folder / "1" / "model.onnx"), run(resnet20))
    assert model.notes == ()


def test_a_run_folder_serves_its_validated_sb_artifacts_that_take_batch_1(tmp_path: Path) -> None:
    import json

    from sbdeploy.serve.run_folder import served_artifacts

    run = tmp_path / "run"
    run.mkdir()
    for name in (
        "model.onnx",
        "model.ort-cpu.b1.fp32.onnx",
        "model.ort-cpu.b8.fp32.onnx",
        "model.trt.fp16.onnx",
        "baseline.ort-cpu.b1.fp32.onnx",
    ):
        tiny_onnx(run / name, batch=8 if ".b8." in name else 1 if ".b1." in name else "batch")
    entries = [
        {"file": "model.onnx", "parity": True, "batch": None},
        {"file": "model.ort-cpu.b1.fp32.onnx", "parity": True, "batch": 1},
        {"file": "model.ort-cpu.b8.fp32.onnx", "parity": True, "batch": 8},
        {"file": "model.trt.fp16.onnx", "parity": False, "batch": None},
        {"file": "baseline.ort-cpu.b1.fp32.onnx", "parity": True, "batch": 1},
    ]
    (run / "summary.json").write_text(json.dumps({"artifacts": entries}))
    served, notes = served_artifacts(run)
    assert {name: path.name for name, path in served.items()} == {
        "model": "model.onnx",
        "model_ort-cpu_b1_fp32": "model.ort-cpu.b1.fp32.onnx",
    }
    assert any("b8" in n and "exactly batch 8" in n for n in notes) and any(
        "trt.fp16" in n and "did not pass" in n for n in notes
    )
    repo = write_triton_repo(list(served.values()), tmp_path / "repo", names=list(served))
    assert {m.name: m.max_batch_size for m in repo.models} == {"model": 32, "model_ort-cpu_b1_fp32": 1}
    with pytest.raises(ArtifactError, match="not a pipeline run folder"):
        served_artifacts(tmp_path / "repo")


def test_a_run_folder_serves_an_engine_not_the_onnx_it_was_built_from(tmp_path: Path) -> None:
    """On a TensorRT machine the run folder holds model.trt.fp32.onnx (validated on ort-cpu) beside the engine built from
    it: both would be Triton model model_trt_fp32, so the engine is served and its ONNX is left out, with a note."""
    import json

    from sbdeploy.serve.run_folder import served_artifacts

    run = tmp_path / "run"
    run.mkdir()
    files = (
        "model.onnx",
        "model.trt.fp32.onnx",
        "model.trt.fp32.engine",
        "model.trt.fp16.engine",
        "baseline.trt.fp32.onnx",
    )
    for name in files:
        (run / name).write_bytes(b"x")
    (run / "summary.json").write_text(
        json.dumps({"artifacts": [{"file": f, "parity": True, "batch": None} for f in files]})
    )
    served, notes = served_artifacts(run)
    assert {name: path.name for name, path in served.items()} == {
        "model": "model.onnx",
        "model_trt_fp32": "model.trt.fp32.engine",
        "model_trt_fp16": "model.trt.fp16.engine",
    }
    assert notes == [
        "model.trt.fp32.onnx: not served, the engine built from it (model.trt.fp32.engine) is served as model_trt_fp32"
    ]
    entries = [
        {"file": f, "parity": f != "model.trt.fp32.engine", "batch": None} for f in files
    ]  # the engine failed parity
    (run / "summary.json").write_text(json.dumps({"artifacts": entries}))
    assert served_artifacts(run)[0]["model_trt_fp32"].name == "model.trt.fp32.onnx"  # then its validated ONNX is served


def test_an_onnx_file_in_a_gpu_only_form_gets_gpu_instances(tmp_path: Path) -> None:
    from sbdeploy.export.onnx_export import export_onnx

    files = [
        export_onnx("cifar_resnet20", tmp_path / f"r20.{t}.onnx", input_size=(16, 16), target=t).path
        for t in ("ort-cuda", "ort-cpu")
    ]
    repo = write_triton_repo(files, tmp_path / "repo", names=["cuda_form", "cpu_form"])
    kinds = {m.name: "KIND_GPU" in m.config_text for m in repo.models}
    assert kinds == {"cuda_form": True, "cpu_form": False}
    assert any("ort-cuda target's form" in n for n in repo.models[0].notes)


# Triton's openvino backend: Triton cannot run here, so its configs are checked with Triton's ModelConfig protobuf and
# the keys and values the backend's source reads, and the copied file is compiled by this machine's OpenVINO.


@pytest.fixture(scope="module")
def ov_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sbdeploy.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("ov") / "r20.ov-cpu.b1.fp32.onnx"
    return export_onnx("cifar_resnet20_sb", path, input_size=(16, 16), target="ov-cpu", batch=1).path


def _parameters(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_an_ov_cpu_file_is_served_by_the_openvino_backend(ov_file: Path, tmp_path: Path) -> None:
    import hashlib

    from sbdeploy import environment

    repo = write_triton_repo([ov_file], tmp_path / "repo", name="r20", options=TritonOptions(instances=2))
    (model,) = repo.models
    config = parse(model.folder)
    assert model.platform == config.backend == "openvino" and config.platform == ""
    assert config.default_model_filename == "model.onnx" and config.max_batch_size == 1
    assert _parameters(config) == {
        "INFERENCE_NUM_THREADS": str(environment.available_cpus()),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, pb2.ModelInstanceGroup.KIND_CPU)]
    assert [list(t.dims) for t in config.input] == [[3, 16, 16]] and [list(t.dims) for t in config.output] == [[10]]
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(model.folder / "1" / "model.onnx") == digest(ov_file)  # the validated file's bytes
    readme = (model.folder / "README.md").read_text()
    assert "- backend: `openvino`" in readme and "no key for f32" in readme and "HINT_BF16" not in config_text(model)


def config_text(model) -> str:
    return (model.folder / "config.pbtxt").read_text()


def test_a_mixed_repository_sets_openvino_options_on_its_openvino_models_only(ov_file: Path, tmp_path: Path) -> None:
    plain = tiny_onnx(tmp_path / "plain.onnx")  # no target: ONNX Runtime
    repo = write_triton_repo([plain, ov_file], tmp_path / "repo", names=["ort", "ov"], options=TritonOptions(bf16=True))
    ort, ov = (parse(m.folder) for m in repo.models)
    assert (ort.platform, ort.backend, dict(ort.parameters)) == ("onnxruntime_onnx", "", {})
    assert ov.backend == "openvino" and _parameters(ov)["HINT_BF16"] == "YES"


def test_the_openvino_backend_reads_the_copied_file(ov_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="OpenVINO absent: pip install sbdeploy[openvino]")
    from sbdeploy.backends.openvino import OpenVinoRunner

    model = write_triton_repo([ov_file], tmp_path / "repo", options=TritonOptions(bf16=True, threads=1)).models[0]
    x = {"input": np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    with OpenVinoRunner(ov_file, threads=1) as original, OpenVinoRunner(model.folder / "1" / "model.onnx") as copy:
        np.testing.assert_array_equal(original.infer(x)["logits"], copy.infer(x)["logits"])


def test_bf16_threads_and_batches_on_the_openvino_backend(tmp_path: Path) -> None:
    fixed = tiny_onnx(tmp_path / "fixed.onnx", batch=4)
    options = TritonOptions(onnx_backend="openvino", bf16=True, threads=3)
    config = parse(write_triton_repo([fixed], tmp_path / "repo", options=options).models[0].folder)
    assert _parameters(config) == {
        "INFERENCE_NUM_THREADS": "3",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "HINT_BF16": "YES",
    }
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 3, 8, 8]  # fixed batch: no batching
    dynamic = tiny_onnx(tmp_path / "dynamic.onnx")
    options = TritonOptions(onnx_backend="openvino", max_batch=8)
    model = write_triton_repo([dynamic], tmp_path / "repo", options=options).models[0]
    config = parse(model.folder)
    # the backend compiles at batch max_batch_size and refuses smaller batches unless it pads them
    assert config.max_batch_size == 8 and _parameters(config)["ENABLE_BATCH_PADDING"] == "YES"
    assert any("pads smaller batches" in n for n in model.notes)


def test_what_the_openvino_backend_cannot_serve_is_refused(tmp_path: Path) -> None:
    from onnx import helper

    plain = tiny_onnx(tmp_path / "plain.onnx")
    fused = onnx.load(plain)  # a file with a node of sbdeploy's domain, as a fused export has
    fused.opset_import.append(helper.make_opsetid("sbdeploy.ai", 1))
    onnx.save(fused, tmp_path / "fused.onnx")
    openvino = TritonOptions(onnx_backend="openvino")
    with pytest.raises(ConfigError, match="fused SB operator, which OpenVINO cannot run"):
        write_triton_repo([tmp_path / "fused.onnx"], tmp_path / "repo", options=openvino)
    with pytest.raises(ConfigError, match="bf16 hint"):
        write_triton_repo(
            [tiny_onnx(tmp_path / "half.onnx", fp16=True)],
            tmp_path / "repo",
            options=TritonOptions(onnx_backend="openvino", bf16=True),
        )
    with pytest.raises(ConfigError, match="serves none of these: add --onnx-backend openvino"):
        write_triton_repo([plain], tmp_path / "repo", options=TritonOptions(bf16=True))
    for bad, match in (
        ({"onnx_backend": "openvino", "onnx_device": "gpu"}, "CPU instances only"),
        ({"onnx_backend": "onnxruntime", "threads": 2}, "drop them"),
        ({"onnx_backend": "tvm"}, "onnxruntime or openvino"),
        ({"threads": 0}, ">= 1"),
    ):
        with pytest.raises(ConfigError, match=match):
            TritonOptions(**bad)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace('"NUM_STREAMS"', '"INFERENCE_PRECISION_HINT"'), "not one the openvino backend reads"),
        (lambda t: t.replace('string_value: "LATENCY"', 'string_value: "FAST"'), "not a value"),
        (lambda t: t.replace('string_value: "1"', 'string_value: "one"'), "not a value"),
        (lambda t: t.replace("KIND_CPU", "KIND_GPU"), "KIND_CPU instances only"),
        (lambda t: t.replace('default_model_filename: "model.onnx"\n', ""), "model.xml when unset"),
        (
            lambda t: t.replace('backend: "openvino"', 'backend: "openvino"\nplatform: "onnxruntime_onnx"'),
            "not a platform",
        ),
        (lambda t: t.replace('backend: "openvino"', 'backend: "pytorch"'), "not one sbdeploy writes"),
    ],
)
def test_check_model_config_knows_the_openvino_backend(tmp_path: Path, edit, problem: str) -> None:
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx", batch=1)
    text = (
        write_triton_repo([onnx_path], tmp_path / "repo", options=TritonOptions(onnx_backend="openvino"))
        .models[0]
        .config_text
    )
    edited = edit(text)
    assert edited != text
    with pytest.raises(ConfigError, match=problem):
        check_model_config(edited)
