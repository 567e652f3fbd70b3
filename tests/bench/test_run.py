"""The settings block of a bench report (sbdeploy.bench.run.bench_subjects): what it says about how each backend computed;
the MACs of a given file (subjects_from_files), by its metadata."""

from __future__ import annotations

from pathlib import Path

from sbdeploy.backends import get_runner
from sbdeploy.backends.ort import SPIN_S, TF32_NOTES, SessionSettings
from sbdeploy.bench.report import BenchRow
from sbdeploy.bench.run import BenchSubject, _Entry, bench_subjects, fastest_entries, fastest_of
from sbdeploy.bench.timing import LatencyStats, TimingPlan, fair_plan
from sbdeploy.files import describe_file


def _notes(backends: list[str], precisions: list[str], notes: tuple[str, ...] = ()) -> object:
    report = bench_subjects([], backends=backends, batches=[1], precisions=precisions, plan=TimingPlan(), notes=notes)
    return report.settings["notes"]


def test_gpu_onnx_backends_say_how_their_fp32_runs_computed() -> None:
    """ort-cuda is timed with TF32 off (use_tf32=0), as validate judges it; ort-trt with TF32 on, which it cannot clear."""
    notes = _notes(["torch", "ort-cpu", "ort-cuda", "ort-trt"], ["fp32", "fp16"], ("given note",))
    assert notes == ["given note", TF32_NOTES["ort-cuda"], TF32_NOTES["ort-trt"]]
    assert "use_tf32=0" in TF32_NOTES["ort-cuda"] and "TF32 tolerance" in TF32_NOTES["ort-trt"]
    assert _notes(["ort-cuda"], ["fp16"]) == []  # no fp32 run
    assert _notes(["ort-cpu"], ["fp32"]) == []


def test_interleaved_spinning_ort_sessions_settle_for_their_spin(tiny_onnx: Path) -> None:
    spinning, quiet = (SessionSettings(intra_op_threads=2, threads=2, spinning=s) for s in (True, False))
    with get_runner("ort-cpu", tiny_onnx, session=spinning) as a, get_runner("ort-cpu", tiny_onnx, session=quiet) as b:
        assert (a.idle_spin_s, b.idle_spin_s) == (SPIN_S, 0.0)
        spins = [r.idle_spin_s for r in (a, b)]
        assert fair_plan(TimingPlan(), spins).settle_s == SPIN_S  # the longest spin of the group
        assert fair_plan(TimingPlan(), spins[:1]).settle_s == 0.0  # alone: its own spin is what it costs deployed
        assert fair_plan(TimingPlan(), [0.0, 0.0]).settle_s == 0.0
    with get_runner("ort-cpu", tiny_onnx, session=SessionSettings(intra_op_threads=1, threads=1)) as one:
        assert one.idle_spin_s == 0.0  # one thread: no pool worker to spin


def test_fastest_files_are_timed_again_only_where_a_network_had_a_choice(tiny_onnx: Path) -> None:
    f = describe_file(tiny_onnx)
    stats = {ms: LatencyStats.from_samples([ms / 1e3] * 10) for ms in (1.0, 2.0, 3.0)}

    def row(model: str, backend: str, precision: str, ms: float) -> BenchRow:
        return BenchRow(model, backend, 1, 1, None, stats[ms], precision=precision, file=f.name)

    def subject(label: str, baseline: str | None, *keys: tuple[str, str]) -> BenchSubject:
        files = {(b, 1, p): f for b, p in keys}
        return BenchSubject(label, "net", 1, baseline, 1, (8, 8), files=files)

    one = [row("net", "ort-cpu", "fp32", 2.0), row("net_sb", "ort-cpu", "fp32", 1.0)]
    subjects = [subject("net", None, ("ort-cpu", "fp32")), subject("net_sb", "net", ("ort-cpu", "fp32"))]
    assert fastest_entries(one, subjects, 1) == []  # one file each, already paired in their group
    both = [*one, row("net", "ov-cpu", "bf16", 1.0), row("net_sb", "ov-cpu", "bf16", 3.0)]
    subjects = [subject(s.label, s.baseline, ("ort-cpu", "fp32"), ("ov-cpu", "bf16")) for s in subjects]
    picked = {(e.subject.label, e.backend, e.precision) for e in fastest_entries(both, subjects, 1)}
    # the finalists: each network's fastest on each engine (their own groups ran apart)
    assert picked == {(m, b, p) for m in ("net", "net_sb") for b, p in [("ort-cpu", "fp32"), ("ov-cpu", "bf16")]}
    assert fastest_entries(both, subjects, 8) == []  # nothing timed at that batch
    # a slower precision on an engine is no finalist; the engines' best are, even where the other engine's is faster
    three = [*both, row("net_sb", "ort-cpu", "int8", 3.0), row("net_sb", "ov-cpu", "int8", 2.0)]
    keys = [("ort-cpu", "fp32"), ("ov-cpu", "bf16"), ("ort-cpu", "int8"), ("ov-cpu", "int8")]
    subjects = [subject("net", None, *keys), subject("net_sb", "net", *keys)]
    picked = {(e.subject.label, e.backend, e.precision) for e in fastest_entries(three, subjects, 1)}
    assert picked == {("net", "ort-cpu", "fp32"), ("net", "ov-cpu", "bf16")} | {
        ("net_sb", "ort-cpu", "fp32"),
        ("net_sb", "ov-cpu", "int8"),
    }


def test_the_fastest_file_is_the_one_the_finalists_group_timed_fastest(tiny_onnx: Path) -> None:
    """Which engine's finalist ships is decided by the group that timed them together, not by their own groups'
    medians (a machine whose speed changes between groups would otherwise choose by luck)."""
    f = describe_file(tiny_onnx)
    files = {(b, 1, p): f for b, p in [("ort-cpu", "int8"), ("ov-cpu", "int8"), ("ov-cpu", "bf16")]}
    sb, base = (
        BenchSubject(label, "net", 1, baseline, 1, (8, 8), files=files)
        for label, baseline in [("net_sb", "net"), ("net", None)]
    )
    entries = [_Entry(s, b, p, f) for s in (sb, base) for b, p in [("ort-cpu", "int8"), ("ov-cpu", "int8")]]
    entries.append(_Entry(base, "ov-cpu", "bf16", f))
    medians = {"net_sb ort-cpu int8": 2.0, "net_sb ov-cpu int8": 1.0, "net ort-cpu int8": 1.0}
    medians |= {"net ov-cpu int8": 3.0, "net ov-cpu bf16": 0.5}
    stats = {k: LatencyStats.from_samples([ms / 1e3] * 10) for k, ms in medians.items()}
    chosen = {(e.subject.label, e.backend, e.precision) for e in fastest_of(entries, stats)}
    assert chosen == {("net_sb", "ov-cpu", "int8"), ("net", "ov-cpu", "bf16")}
    medians["net_sb ort-cpu int8"] = 0.9  # the same finalists timed otherwise: the other engine's
    stats = {k: LatencyStats.from_samples([ms / 1e3] * 10) for k, ms in medians.items()}
    assert ("net_sb", "ort-cpu", "int8") in {
        (e.subject.label, e.backend, e.precision) for e in fastest_of(entries, stats)
    }


def test_a_mixed_networks_file_is_counted_with_its_placement(tmp_path: Path) -> None:
    from sbdeploy.bench.run import subjects_from_files
    from sbdeploy.export.onnx_export import export_onnx
    from sbdeploy.flops import count_macs
    from sbdeploy.models import create_model

    options = {"sampling": "single", "sb_stages": [2]}
    export_onnx("cifar_resnet20_sb", tmp_path / "mixed.onnx", input_size=(16, 16), options=options)
    (subject,) = subjects_from_files([tmp_path / "mixed.onnx"], ["ort-cpu"], [1])
    mixed, every = (
        count_macs(create_model("cifar_resnet20_sb", **o), (16, 16)) for o in (options, {"sampling": "single"})
    )
    assert subject.macs == mixed > every  # the file's metadata carries the placement into the MAC count
