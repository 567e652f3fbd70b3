"""Running for validation (Polygraphy's run step): PyTorch and every artifact on the same inputs, every output kept.

:func:`run_validation` returns :class:`RunResults` (saved as JSON + ``.npz``, never pickled);
:func:`sbdeploy.validate.compare.judge` compares them; :func:`validate` does both.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from sbdeploy._io import atomic_write_bytes
from sbdeploy.backends import get_runner
from sbdeploy.backends.base import Runner
from sbdeploy.backends.ort import FP32_TF32
from sbdeploy.backends.torch_runner import TorchRunner
from sbdeploy.calibration import normalize
from sbdeploy.checkpoint import Checkpoint, CheckpointConfig, load_checkpoint
from sbdeploy.data import open_source, to_float
from sbdeploy.environment import Environment, collect_environment
from sbdeploy.errors import ArtifactError, ConfigError, InputError
from sbdeploy.files import DeployFile
from sbdeploy.targets import RUN_PRECISIONS, run_options
from sbdeploy.validate.compare import Tolerance, ValidationReport, judge


@dataclass(frozen=True)
class Artifact:
    """One thing to validate: a file and the backend that runs it."""

    backend: str  # ort-cpu, ort-cuda, ort-trt, trt
    path: Path
    precision: str  # fp32, tf32 (an fp32 file run with TF32: an engine built with it, or on ort-trt), fp16, int8
    batch_sizes: tuple[int, ...]  # random-batch sizes to try (engine profiles: min, opt, max)
    max_batch: int  # largest batch one call may take
    sha256: str = ""  # of the file
    target: str | None = None  # the deploy target of its form (None: not written by sbdeploy)
    tf32: bool | None = None  # an fp32 run on a GPU: whether it may use TF32 tensor cores (None: not such a run)
    file_info: DeployFile | None = field(default=None, compare=False, repr=False)  # what its metadata says it is

    @property
    def file(self) -> str:
        return self.path.name

    def to_dict(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "file_info"}
        return {**data, "path": str(self.path), "file": self.file}

    @classmethod
    def from_dict(cls, data: dict) -> Artifact:
        values = {f.name: data[f.name] for f in fields(cls) if f.name != "file_info"}
        return cls(**{**values, "path": Path(values["path"]), "batch_sizes": tuple(values["batch_sizes"])})


@dataclass(frozen=True)
class InputCase:
    """A named input batch, with labels when it comes from a dataset."""

    name: str
    images: np.ndarray  # [N, C, H, W] float32, normalized as the model expects
    labels: np.ndarray | None = None


def random_cases(batch_sizes: Sequence[int], shape: tuple[int, int, int], seed: int = 0) -> list[InputCase]:
    """Standard-normal batches (the model's normalized input space) of each size."""
    rng = np.random.default_rng(seed)
    return [
        InputCase(f"random b{b}", rng.standard_normal((b, *shape), dtype=np.float32)) for b in sorted(set(batch_sizes))
    ]


def run_batched(runner: Runner, images: np.ndarray, max_batch: int, fixed_batch: int | None = None) -> np.ndarray:
    """Run ``images`` through ``runner`` in chunks; pad the last chunk for fixed-batch models."""
    name = runner.input_specs()[0].name
    outputs = []
    step = fixed_batch or max_batch
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        n = len(chunk)
        if fixed_batch and n < fixed_batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - n, axis=0)])
        out = next(iter(runner.infer({name: np.ascontiguousarray(chunk)}).values()))
        outputs.append(np.asarray(out)[:n])
    return np.concatenate(outputs)


RunnerFactory = Callable[[Artifact], Runner]


def open_runner(artifact: Artifact) -> Runner:
    """The default :data:`RunnerFactory`: the artifact's backend on its file, at its run-time precision if any."""
    return get_runner(artifact.backend, artifact.path, **run_options(artifact.backend, artifact.precision))


DYNAMIC_BATCHES = (1, 2, 8)
"""Random-batch sizes tried on an ONNX model with a dynamic batch."""


def artifact_of(file: DeployFile, backend: str | None = None, run_precision: str | None = None) -> Artifact:
    """An artifact to validate: ``file`` on ``backend`` (default: the file's own), with the batch sizes it takes.

    A fixed batch is tried at that batch; a dynamic ONNX batch at :data:`DYNAMIC_BATCHES`
    (one call takes up to 32); an engine at its profile's min, opt and max.

    An fp32 file run with TF32 is judged as ``tf32``, by the TF32 tolerance: an engine built
    with TF32 (its sidecar says so), or any fp32 ONNX on ``ort-trt`` (ONNX Runtime's TensorRT
    provider cannot clear TF32); on ``ort-cuda`` it runs without TF32 and is judged as fp32
    (:data:`sbdeploy.backends.ort.FP32_TF32`). ``tf32`` records which. ``run_precision``: a precision the
    backend sets at run time on the fp32 file (:data:`sbdeploy.targets.RUN_PRECISIONS`, ov-cpu's bf16), judged as such.
    """
    backend = backend or file.default_backend()
    if not file.runs_on(backend):
        raise ConfigError(
            f"{file.name} is an {'engine' if file.kind == 'engine' else 'ONNX file'}; {backend} does not run it"
        )
    sizes: tuple[int, ...]
    if file.batch is not None:
        sizes, max_batch = (file.batch,), file.batch
    elif file.profile is not None:
        sizes = tuple(sorted(set(file.profile)))
        max_batch = sizes[-1]
    else:
        sizes, max_batch = DYNAMIC_BATCHES, 32
    precision, tf32 = file.precision, None
    if run_precision is not None and run_precision != precision:
        if file.precision != "fp32" or run_precision not in RUN_PRECISIONS.get(backend, ()):
            raise ConfigError(
                f"{backend} runs {file.name} ({file.precision}) as it is; it sets "
                f"{', '.join(RUN_PRECISIONS.get(backend, ())) or 'no precision'} at run time on fp32 files only"
            )
        precision = run_precision
    if file.kind == "engine" and precision in ("fp32", "tf32"):
        tf32 = precision == "tf32"  # from the sidecar (describe_file)
    elif precision == "fp32" and backend in FP32_TF32:
        tf32 = FP32_TF32[backend]
        precision = "tf32" if tf32 else precision
    return Artifact(
        backend=backend,
        path=file.path,
        precision=precision,
        batch_sizes=sizes,
        max_batch=max_batch,
        sha256=file.sha256,
        target=file.target,
        tf32=tf32,
        file_info=file,
    )


def check_same_model(file: DeployFile, checkpoint: Checkpoint) -> None:
    """ArtifactError, in one line naming both models, when ``file`` was made from another model than ``checkpoint``.

    Compared from the file's metadata (an engine: its sidecar's copy): architecture,
    options, input shape and the sha256 of the weights it was exported from. A file
    without sbdeploy metadata passes (there is nothing to compare; the run itself judges it).
    """
    differences = file.differences_from(checkpoint.config, checkpoint.weights_sha256)
    if not differences:
        return
    where = f"the checkpoint {checkpoint.path}"
    if file.arch != checkpoint.config.arch:
        what = f"{file.name} holds a {file.arch} network, {where} a {checkpoint.config.arch}"
    else:
        what = f"{file.name} and {where} are both {file.arch} but not the same model ({'; '.join(differences)})"
    raise ArtifactError(
        f"{what}: validate judges a file against the checkpoint it was exported from; give that checkpoint, "
        f"or export this one (`sbdeploy export {checkpoint.path} -o FILE`)"
    )


def dataset_case(source: str, config: CheckpointConfig, *, limit: int | None = None) -> InputCase:
    """The test split of a data source, resized and normalized as the checkpoint expects."""
    data = open_source(source, size=config.input_size[0])
    images = to_float(data.test_images).numpy()
    labels = data.test_labels.numpy()
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if images.shape[1] != config.in_chans:
        raise ConfigError(
            f"data source {source!r} has {images.shape[1]} channels but the model takes {config.in_chans}"
        )
    return InputCase(f"{data.source} test", normalize(images, config.mean, config.std), labels.astype(np.int64))


INT8_NEEDS_DATA = (
    "int8 files are judged on real images (their scales are calibrated on them), and no dataset is named: give "
    "`sbdeploy validate CHECKPOINT --int8 --data SOURCE`, or a checkpoint trained by `sbdeploy train` (its "
    "config.json names the dataset)"
)


def require_data(precisions: Sequence[str], dataset: object) -> None:
    """ConfigError when an int8 file would be judged without real images (said before anything is made or run)."""
    if "int8" in precisions and not dataset:
        raise ConfigError(INT8_NEEDS_DATA)


@dataclass
class RunResults:
    """What one validation run produced: PyTorch's and every artifact's outputs per input case."""

    checkpoint: str  # the reference: its folder as given, or its zoo name
    artifacts: list[Artifact]
    outputs: list[dict[str, np.ndarray]]  # per artifact (same order): case name -> its logits
    reference: dict[str, np.ndarray]  # case name -> PyTorch's logits
    dataset: str | None = None  # the real-image case (None: random batches only)
    labels: np.ndarray | None = None
    environment: Environment = field(default_factory=collect_environment)

    def save(self, folder: str | Path) -> Path:
        """Write ``outputs.json`` and ``outputs.npz`` into ``folder`` (atomically); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"reference {case}": out for case, out in self.reference.items()}
        arrays |= {f"{i} {case}": out for i, outputs in enumerate(self.outputs) for case, out in outputs.items()}
        if self.labels is not None:
            arrays["labels"] = self.labels
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        manifest = {
            "format": RESULTS_FORMAT,
            "checkpoint": self.checkpoint,
            "dataset": self.dataset,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "cases": [list(outputs) for outputs in self.outputs],
            "reference": list(self.reference),
            "environment": self.environment.to_dict(),
        }
        atomic_write_bytes(folder / "outputs.npz", buffer.getvalue())
        atomic_write_bytes(folder / "outputs.json", (json.dumps(manifest, indent=2) + "\n").encode())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RunResults:
        """Read what :meth:`save` wrote (InputError naming the file when it is missing or not such a folder)."""
        folder = Path(folder)
        try:
            manifest = json.loads((folder / "outputs.json").read_text())
            if not isinstance(manifest, dict) or manifest.get("format") != RESULTS_FORMAT:
                raise ValueError(f"not a manifest of format {RESULTS_FORMAT!r}")
            with np.load(folder / "outputs.npz", allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            results = cls(
                checkpoint=manifest["checkpoint"],
                artifacts=[Artifact.from_dict(a) for a in manifest["artifacts"]],
                outputs=[{case: arrays[f"{i} {case}"] for case in cases} for i, cases in enumerate(manifest["cases"])],
                reference={case: arrays[f"reference {case}"] for case in manifest["reference"]},
                dataset=manifest["dataset"],
                labels=arrays.get("labels"),
                environment=Environment(**manifest["environment"]),
            )
            for outputs in results.outputs:
                for case, out in outputs.items():
                    if out.shape != results.reference[case].shape:
                        raise ValueError(
                            f"{case}: outputs of shape {out.shape}, PyTorch's {results.reference[case].shape}"
                        )
            return results
        except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as error:
            raise InputError(
                f"{folder} does not hold outputs saved by `sbdeploy validate --save-outputs` ({error})"
            ) from None


RESULTS_FORMAT = "sbdeploy-validate-outputs-1"


def run_validation(
    checkpoint: str | Path | Checkpoint,
    artifacts: Sequence[Artifact],
    *,
    runner_factory: RunnerFactory,
    dataset: InputCase | None = None,
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> RunResults:
    """Run the checkpoint's PyTorch code and each artifact on random batches and ``dataset``; keep every output.

    A file made from another model than the checkpoint (:func:`check_same_model`) and int8
    without real images are refused before anything runs. ``on_progress`` gets ``(what runs
    now, steps done, steps in all)`` before each run.
    """
    if not artifacts:
        raise ConfigError("nothing to validate: give an ONNX file or an engine (or let validate export one)")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    for artifact in artifacts:
        if artifact.file_info is not None:
            check_same_model(artifact.file_info, ckpt)
    require_data([a.precision for a in artifacts], dataset)
    h, w = input_size or ckpt.config.input_size
    sizes = sorted({b for a in artifacts for b in a.batch_sizes})
    random = {int(case.images.shape[0]): case for case in random_cases(sizes, (ckpt.config.in_chans, h, w), seed)}
    total = sum(len(set(a.batch_sizes)) + (dataset is not None) for a in artifacts)
    total += dataset is not None and dataset.labels is not None
    done = 0

    def step(text: str) -> None:
        nonlocal done
        if on_progress is not None:
            on_progress(text, done, total)
        done += 1

    reference: dict[str, np.ndarray] = {}  # by case name: one name, one set of images
    outputs: list[dict[str, np.ndarray]] = []
    with TorchRunner(ckpt.model) as torch_runner:

        def run_reference(case: InputCase) -> None:
            if case.name not in reference:
                reference[case.name] = run_batched(torch_runner, case.images, max_batch=64)

        if dataset is not None and dataset.labels is not None:
            step(f"torch on {dataset.name}")
            run_reference(dataset)
        for artifact in artifacts:
            cases = [random[b] for b in sorted(set(artifact.batch_sizes))] + ([dataset] if dataset is not None else [])
            outputs.append({})
            with runner_factory(artifact) as runner:
                fixed = runner.input_specs()[0].shape[0]
                for case in cases:
                    step(f"{artifact.file} on {artifact.backend}: {case.name}")
                    run_reference(case)
                    outputs[-1][case.name] = run_batched(runner, case.images, artifact.max_batch, fixed_batch=fixed)
    return RunResults(
        checkpoint=str(ckpt.path),
        artifacts=list(artifacts),
        outputs=outputs,
        reference=reference,
        dataset=None if dataset is None else dataset.name,
        labels=None if dataset is None else dataset.labels,
    )


def validate(
    checkpoint: str | Path | Checkpoint,
    artifacts: Sequence[Artifact],
    *,
    runner_factory: RunnerFactory,
    dataset: InputCase | None = None,
    tolerances: dict[str, Tolerance] | None = None,
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ValidationReport:
    """Run (:func:`run_validation`), then judge (:func:`sbdeploy.validate.compare.judge`) with ``tolerances``."""
    results = run_validation(
        checkpoint,
        artifacts,
        runner_factory=runner_factory,
        dataset=dataset,
        input_size=input_size,
        seed=seed,
        on_progress=on_progress,
    )
    return judge(results, tolerances)
