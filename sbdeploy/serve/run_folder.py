"""Which files of a pipeline run folder ``triton-repo`` serves: the validated SB files Triton can batch."""

from __future__ import annotations

import json
from pathlib import Path

from sbdeploy.errors import ArtifactError

SB_STEM = "model"
"""The file-name stem of the SB model's files in a run folder (the baseline's: ``baseline``)."""


def served_artifacts(folder: str | Path) -> tuple[dict[str, Path], list[str]]:
    """Model name -> file of the validated SB artifacts of a pipeline run folder that Triton can serve, and notes on
    those left out.

    Not served: baseline files, files whose parity did not pass, fixed-batch files above batch 1
    (Triton's dynamic batcher sends any batch of 1..max_batch_size), and the ONNX file an engine
    was built from when that engine is served (``model.trt.fp32.onnx`` beside
    ``model.trt.fp32.engine``: both would be model ``model_trt_fp32``). Model names are the
    file names without the extension, dots as underscores (``model_ort-cpu_b1_fp32``).
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
    served: dict[str, Path] = {}
    notes = []
    for entry in entries:
        file = str(entry.get("file", ""))
        if not file.startswith(f"{SB_STEM}."):
            continue
        if entry.get("parity") is not True:
            notes.append(f"{file}: not served, its parity check did not pass")
        elif (entry.get("batch") or 1) > 1:
            notes.append(
                f"{file}: not served, it takes exactly batch {entry['batch']} and Triton batches 1..N "
                f"(serve {SB_STEM}.onnx or an engine for batches)"
            )
        elif not (folder / file).is_file():
            notes.append(f"{file}: not served, it is missing from {folder}")
        else:
            name = file.rsplit(".", 1)[0].replace(".", "_")
            path = served.setdefault(name, folder / file)
            if path.name != file:  # an ONNX file and the engine built from it: the engine is served
                source, engine = (path, folder / file) if path.suffix == ".onnx" else (folder / file, path)
                served[name] = engine
                notes.append(f"{source.name}: not served, the engine built from it ({engine.name}) is served as {name}")
    if not served:
        raise ArtifactError(
            f"{folder} holds no validated SB artifact Triton can serve ({'; '.join(notes) or 'none listed'})"
        )
    return served, notes
