"""Which files of a pipeline run folder ``triton-repo`` serves: the validated SB files Triton can batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sbdeploy.errors import ArtifactError

SB_STEM = "model"
"""The file-name stem of the SB model's files in a run folder (the baseline's: ``baseline``)."""


@dataclass(frozen=True)
class ServedArtifact:
    """A run folder's file that ``triton-repo`` serves, and the model name it gets."""

    path: Path
    name: str


def served_artifacts(folder: str | Path) -> tuple[list[ServedArtifact], list[str]]:
    """The validated SB artifacts of a pipeline run folder that Triton can serve, and notes on those left out.

    Served: every SB file (``model.*``) whose parity passed, except fixed-batch ONNX files
    with a batch above 1 (Triton's dynamic batcher sends any batch of 1..max_batch_size; a
    file that takes exactly 8 images would refuse the rest: serve ``model.onnx`` or an
    engine for batches, the batch-1 file for batch-1 latency), and the ONNX file an engine
    was built from when that engine is served (``model.trt.fp32.onnx`` beside
    ``model.trt.fp32.engine``: the same model name, and the engine is what it was made
    for). Baseline files are not served. Model names are the file names without the
    extension, dots as underscores (``model_ort-cpu_b1_fp32``).

    Raises:
        ArtifactError: the folder holds no pipeline summary.
    """

    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise ArtifactError(
            f"{folder} is not a pipeline run folder (no summary.json); give its files, or run `sbdeploy pipeline`"
        )
    try:
        summary = json.loads(summary_path.read_text())
        entries = list(summary["artifacts"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ArtifactError(
            f"{summary_path} is not a pipeline summary sbdeploy can read ({error}); rerun `sbdeploy pipeline`"
        ) from None
    served, notes = [], []
    for entry in entries:
        file = str(entry.get("file", ""))
        if not file.startswith(f"{SB_STEM}."):
            continue
        if entry.get("parity") is not True:
            notes.append(f"{file}: not served, its parity check did not pass")
        elif (entry.get("batch") or 1) > 1:
            notes.append(f"{file}: not served, it takes exactly batch {entry['batch']} and Triton batches 1..N "
                         f"(serve {SB_STEM}.onnx or an engine for batches)")  # fmt: skip
        elif not (folder / file).is_file():
            notes.append(f"{file}: not served, it is missing from {folder}")
        else:
            served.append(ServedArtifact(folder / file, file.rsplit(".", 1)[0].replace(".", "_")))
    engines = {s.name: s.path.name for s in served if s.path.suffix != ".onnx"}
    for source in [s for s in served if s.path.suffix == ".onnx" and s.name in engines]:
        served.remove(source)
        notes.append(
            f"{source.path.name}: not served, the engine built from it ({engines[source.name]}) is served as {source.name}"
        )
    if not served:
        raise ArtifactError(
            f"{folder} holds no validated SB artifact Triton can serve ({'; '.join(notes) or 'none listed'})"
        )
    return served, notes
