"""The settings block of a bench report (sbdeploy.bench.run.bench_subjects): what it says about how each backend computed;
the MACs of a given file (subjects_from_files), by its metadata."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sbdeploy.backends import get_runner
from sbdeploy.backends.ort import SPIN_S, TF32_NOTES, SessionSettings
from sbdeploy.bench.report import BenchRow
from sbdeploy.bench.run import BenchSubject, bench_subjects, fastest_entries, fastest_of
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


FASTEST_PAIR = [("net", None), ("net_sb", "net")]  # (label, baseline) of the fastest-file cases


def _stats(ms: float) -> LatencyStats:
    return LatencyStats.from_samples([ms / 1e3] * 10)


def _fastest_case(tiny_onnx: Path, *keys: tuple[str, str]) -> tuple[list[BenchSubject], Callable[..., BenchRow]]:
    """A network and its SB form, each with a file for every (backend, precision) of ``keys`` at batch 1; and
    ``row(model, backend, precision, ms)``, a row of one of them timed at ``ms``."""
    f = describe_file(tiny_onnx)

    def row(model: str, backend: str, precision: str, ms: float) -> BenchRow:
        return BenchRow(model, backend, 1, 1, None, _stats(ms), precision=precision, file=f.name)

    files = {(b, 1, p): f for b, p in keys}
    subjects = [BenchSubject(label, "net", 1, base, 1, (8, 8), files=files) for label, base in FASTEST_PAIR]
    return subjects, row


def _picked(entries: list) -> set[tuple[str, str, str]]:  # entries of bench.run: (network, backend, precision)
    return {(e.subject.label, e.backend, e.precision) for e in entries}


def test_fastest_files_are_timed_again_only_where_a_network_had_a_choice(tiny_onnx: Path) -> None:
    subjects, row = _fastest_case(tiny_onnx, ("ort-cpu", "fp32"))
    one = [row("net", "ort-cpu", "fp32", 2.0), row("net_sb", "ort-cpu", "fp32", 1.0)]
    assert fastest_entries(one, subjects, 1) == []  # one file each, already paired in their group
    subjects, row = _fastest_case(tiny_onnx, ("ort-cpu", "fp32"), ("ov-cpu", "bf16"))
    both = [*one, row("net", "ov-cpu", "bf16", 1.0), row("net_sb", "ov-cpu", "bf16", 3.0)]
    # the finalists: each network's fastest on each engine (their own groups ran apart)
    assert _picked(fastest_entries(both, subjects, 1)) == {
        (m, b, p) for m in ("net", "net_sb") for b, p in [("ort-cpu", "fp32"), ("ov-cpu", "bf16")]
    }
    assert fastest_entries(both, subjects, 8) == []  # nothing timed at that batch
    # a slower precision on an engine is no finalist; the engines' best are, even where the other engine's is faster
    keys = [("ort-cpu", "fp32"), ("ov-cpu", "bf16"), ("ort-cpu", "int8"), ("ov-cpu", "int8")]
    subjects, row = _fastest_case(tiny_onnx, *keys)
    three = [*both, row("net_sb", "ort-cpu", "int8", 3.0), row("net_sb", "ov-cpu", "int8", 2.0)]
    assert _picked(fastest_entries(three, subjects, 1)) == {("net", "ort-cpu", "fp32"), ("net", "ov-cpu", "bf16")} | {
        ("net_sb", "ort-cpu", "fp32"),
        ("net_sb", "ov-cpu", "int8"),
    }


def test_a_choice_of_precisions_on_one_engine_has_one_finalist_a_network(tiny_onnx: Path) -> None:
    """Its fastest precision was timed beside the others in its engine's group: no finalists group is needed
    (``bench_subjects`` runs one only where a network has more finalists than one)."""
    subjects, row = _fastest_case(tiny_onnx, ("ort-cpu", "fp32"), ("ort-cpu", "int8"))
    rows = [row(m, "ort-cpu", p, ms) for m, p, ms in [("net", "fp32", 2.0), ("net", "int8", 1.0)]]
    rows += [row("net_sb", "ort-cpu", p, ms) for p, ms in [("fp32", 1.0), ("int8", 3.0)]]
    entries = fastest_entries(rows, subjects, 1)
    assert _picked(entries) == {("net", "ort-cpu", "int8"), ("net_sb", "ort-cpu", "fp32")}
    assert len(entries) == len({e.subject.label for e in entries})


def test_the_fastest_file_is_the_one_the_finalists_group_timed_fastest(tiny_onnx: Path) -> None:
    """Which engine's finalist ships is decided by the group that timed them together, not by their own groups'
    medians (a machine whose speed changes between groups would otherwise choose by luck)."""
    subjects, row = _fastest_case(tiny_onnx, ("ort-cpu", "int8"), ("ov-cpu", "int8"))
    rows = [row(m, b, "int8", ms) for m, b, ms in [("net", "ort-cpu", 1.0), ("net", "ov-cpu", 3.0)]]
    rows += [row("net_sb", b, "int8", ms) for b, ms in [("ort-cpu", 1.0), ("ov-cpu", 2.0)]]  # ort-cpu by its rows
    entries = fastest_entries(rows, subjects, 1)
    medians = {"net ort-cpu int8": 1.0, "net ov-cpu int8": 3.0, "net_sb ort-cpu int8": 2.0, "net_sb ov-cpu int8": 1.0}
    timed_together = {k: _stats(ms) for k, ms in medians.items()}
    assert _picked(fastest_of(entries, timed_together)) == {("net", "ort-cpu", "int8"), ("net_sb", "ov-cpu", "int8")}
    medians["net_sb ort-cpu int8"] = 0.9  # the same finalists timed otherwise: the other engine's
    timed_together = {k: _stats(ms) for k, ms in medians.items()}
    assert ("net_sb", "ort-cpu", "int8") in _picked(fastest_of(entries, timed_together))


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
