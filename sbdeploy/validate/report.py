"""The validation report as files: ``validate.json`` and ``validate.md`` (verdict, files, checks, accuracy, tolerances)."""

from __future__ import annotations

import json
from pathlib import Path

from sbdeploy._io import atomic_write_bytes
from sbdeploy.tolerance import TOLERANCE_REASONS
from sbdeploy.validate.compare import ValidationReport, tf32_notes


def to_markdown(report: ValidationReport) -> str:
    """The report as Markdown: verdict, the files judged, checks table, accuracy table, tolerances."""
    lines = [
        f"# sbdeploy validate: {'PASSED' if report else 'FAILED'}",
        "",
        f"Reference (PyTorch training code): `{report.checkpoint}`",
        "",
        "| file | sha256 | target | backend | precision | TF32 | reference | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = report.file_verdicts()
    references = {c.file: c.reference for c in report.checks}
    for artifact in report.artifacts:
        verdict_text = "pass" if verdicts.get(artifact.file) else "**FAIL**" if artifact.file in verdicts else "-"
        tf32 = "-" if artifact.tf32 is None else "on" if artifact.tf32 else "off"
        lines.append(
            f"| `{artifact.file}` | `{artifact.sha256[:16]}` | {artifact.target or '-'} | {artifact.backend} | "
            f"{artifact.precision} | {tf32} | `{references.get(artifact.file, '')}` | {verdict_text} |"
        )
    notes = tf32_notes(report.artifacts)
    lines += ["", *(f"- TF32: {note}." for note in notes)] if notes else []
    lines += [
        "",
        "| file | backend | precision | input | max abs | mean abs | max rel | min cosine | top-1 agree | top-5 agree | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report.checks:
        s = c.stats
        top5 = "-" if s.top5_agreement is None else f"{s.top5_agreement:.1%}"
        result = c.verdict_text.replace("FAIL", "**FAIL**", 1) if c.judged else c.verdict_text
        lines.append(
            f"| `{c.file}` | {c.backend} | {c.precision} | {c.case} | {s.max_abs:.3g} | {s.mean_abs:.3g} | "
            f"{s.max_rel:.3g} | {s.min_cosine:.6f} | {s.top1_agreement:.1%} | {top5} | {result} |"
        )
    if report.accuracy:
        lines += ["", "| reference | file | backend | dataset | images | top-1 | top-5 | change vs PyTorch |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for a in report.accuracy:
            top5 = "-" if a.top5 is None else f"{a.top5:.2%}"
            file = "PyTorch" if a.file is None else f"`{a.file}`"
            lines.append(
                f"| `{a.reference}` | {file} | {a.backend} | {a.dataset} | {a.samples} | {a.top1:.2%} | {top5} | "
                f"{a.delta_top1:+.2f} pt |"
            )
    lines += ["", "Tolerances (per target and precision):"]
    for key, t in report.tolerances.items():
        precision = key.rsplit(" ", 1)[-1]
        reason = f" ({TOLERANCE_REASONS[precision]})" if precision in TOLERANCE_REASONS else ""
        lines.append(f"- {key}: {t.describe()}{reason}")
    return "\n".join(lines) + "\n"


def write_report(report: ValidationReport, folder: str | Path) -> list[Path]:
    """``validate.json`` and ``validate.md`` in ``folder`` (each written atomically)."""
    paths = [Path(folder) / "validate.json", Path(folder) / "validate.md"]
    atomic_write_bytes(paths[0], (json.dumps(report.to_dict(), indent=2) + "\n").encode())
    atomic_write_bytes(paths[1], to_markdown(report).encode())
    return paths
