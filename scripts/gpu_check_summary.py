"""The one-screen summary of scripts/gpu_check.sh: what the machine has, what the GPU tests did, the latencies.

Reads OUT/doctor.json, OUT/pytest-gpu.xml and OUT/torch_cuda.json (whichever exist) and
prints: GPU, CUDA, TensorRT and the backends that cannot run here (with why); the GPU
tests passed / failed / skipped, each failure and the distinct skip reasons; PyTorch CUDA
baseline vs SB latency per network, batch and dtype with the speedup's 95% interval.
Exit status 1 when a step failed or a test failed. Standard library only, so it runs on
any machine the check runs on.

Usage: python scripts/gpu_check_summary.py OUT
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def machine(out: Path) -> tuple[list[str], bool]:
    doctor = _load_json(out / "doctor.json")
    if doctor is None:
        return ["machine: sbdeploy doctor gave no JSON (see doctor.log)"], False
    gpu = doctor.get("gpu_name")
    lines = [
        f"machine: {gpu or 'no GPU'}"
        + (f" (compute {doctor.get('compute_capability')}, driver {doctor.get('driver')})" if gpu else "")
        + f"; torch {doctor.get('torch')} CUDA {doctor.get('torch_cuda') or 'none (CPU build)'}; onnxruntime {doctor.get('onnxruntime')}",
        f"TensorRT: {doctor.get('tensorrt') or 'not installed: the TensorRT checks skip, the rest ran'}",
    ]
    down = [f"{b['name']} ({b['reason'].split(';')[0]})" for b in doctor.get("backends", []) if not b["available"]]
    if down:
        lines.append("cannot run here: " + "; ".join(down))
    return lines, True


def _skip_reason(case: ET.Element) -> str:
    """Why a test (or a whole module, skipped at collection) was skipped, in its own words."""
    skipped = case.find("skipped")
    message = (skipped.get("message") or "") if skipped is not None else ""
    if message == "collection skipped" and skipped is not None:  # the text is "('path', line, 'Skipped: why')"
        message = (skipped.text or "").rsplit("Skipped: ", 1)[-1].rstrip("')")
    return message.replace("Skipped: ", "")[:110]


def tests(out: Path) -> tuple[list[str], bool]:
    try:
        root = ET.parse(out / "pytest-gpu.xml").getroot()
    except (OSError, ET.ParseError):
        try:
            last = [line for line in (out / "pytest-gpu.log").read_text().splitlines() if line.strip()][-1:]
        except OSError:
            last = []
        return [f"GPU tests: no JUnit XML (pytest-gpu.log: {last[0].strip()[:200] if last else 'empty'})"], False
    everything = list(root.iter("testcase"))
    modules = [
        c for c in everything if not c.get("classname") and c.find("skipped") is not None
    ]  # skipped at collection
    cases = [c for c in everything if c not in modules]
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    passed = len(cases) - len(failed) - len(skipped)
    lines = [f"GPU tests (pytest -m gpu): {passed} passed, {len(failed)} failed, {len(skipped)} skipped"]
    for case in failed[:8]:
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        message = (problem.get("message") or "").splitlines()[0][:110] if problem is not None else ""
        lines.append(f"  FAILED {case.get('classname')}.{case.get('name')}: {message}")
    reasons = Counter(_skip_reason(c) for c in skipped)
    lines += [f"  skipped {n}x: {reason}" for reason, n in reasons.most_common(4)]
    if len(reasons) > 4:
        others = len(reasons) - 4
        lines.append(
            f"  skipped {sum(n for _, n in reasons.most_common()[4:])}x for {others} other reason{'s' * (others > 1)} (pytest-gpu.log)"
        )
    needs_trt = sum(n for reason, n in reasons.items() if "TensorRT" in reason or "pycuda" in reason)
    if needs_trt:
        lines.append(
            f"  {needs_trt} of them need TensorRT: engine builds, engine parity and the pipeline on TensorRT are NOT checked here"
        )
    if modules:
        why = Counter(_skip_reason(c) for c in modules)
        lines.append(f"  {len(modules)} test modules not collected here ({'; '.join(why)})")
    return lines, not failed


def latency(out: Path) -> tuple[list[str], bool]:
    report = _load_json(out / "torch_cuda.json")
    if report is None:
        return ["PyTorch CUDA latency: no report (see torch-cuda.log)"], False
    if not report.get("cuda_available"):
        return [
            f"PyTorch CUDA latency: skipped, no GPU (torch {report.get('torch')}, CUDA {report.get('torch_cuda') or 'none'})"
        ], True
    tf32 = {True: "TF32 convolutions (PyTorch's default)", False: "no TF32"}.get(
        report.get("cudnn_allow_tf32"), "TF32 not recorded"
    )
    lines = [
        f"PyTorch CUDA latency, median ms (baseline / SB), speedup [95% interval], MAC ratio; float32 with {tf32}:"
    ]
    for r in report["rows"]:
        lo, hi = r.get("speedup_ci95", [float("nan"), float("nan")])
        lines.append(
            f"  {r['pair']:15s} b{r['batch']:<3d} {r['backend'].removeprefix('torch-cuda-'):8s} "
            f"{r['base']['median_ms']:8.3f} / {r['sb']['median_ms']:8.3f}   {r['speedup']:5.2f}x [{lo:.2f}-{hi:.2f}]   {r['mac_ratio']:.3f}"
        )
    return lines, bool(report["rows"])


def main(out: Path) -> int:
    ok = True
    lines = [f"sbdeploy GPU check: {out}"]
    for part in (machine, tests, latency):
        text, good = part(out)
        lines += text
        ok = ok and good
    steps = {p.stem: p.read_text().strip() for p in sorted(out.glob("*.rc"))}
    bad = [f"{name} (exit {rc}{', out of time' if rc == '124' else ''})" for name, rc in steps.items() if rc != "0"]
    lines.append("steps: " + (", ".join(f"{n} ok" for n in steps if n not in {b.split()[0] for b in bad}) or "none"))
    if bad:
        lines.append("steps that failed: " + ", ".join(bad))
    print("\n".join(lines))
    return 0 if ok and not bad else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
