"""Which files of a pipeline run folder ``triton-repo`` serves: the validated SB files Triton can batch."""

from __future__ import annotations

import json
from pathlib import Path

from sbdeploy.errors import ArtifactError

SB_STEM = "model"  # the file-name stem of the SB model's files in a run folder (the baseline's: ``baseline``)


def served_artifacts(folder: str | Path) -> tuple[dict[str, Path], list[str]]:
    """Model name (file name less extension, dots as underscores) -> the run folder's validated SB files that Triton
    can serve (not a fixed batch above 1, nor the ONNX an engine served was built from), and notes on those left out."""
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
