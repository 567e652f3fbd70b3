"""Tuning by measurement: the candidates, the choice, and the record the tuned file carries and its runner applies.

The choice is checked as the pure function it is (:func:`sbdeploy.tune.choose` on given
times), never on how fast anything ran here; the end-to-end tests run the real thing
(exports, ONNX Runtime, the bench's timing) on a tiny network with a tiny fixed-length
plan and check its structure: every candidate timed or named as a duplicate graph, the
untuned default among them in both stages, the chosen one written with its settings, the
runner applying them, the file still computing what PyTorch computes.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sbdeploy import kernels
from sbdeploy.artifacts import make_artifacts, plan_artifacts
from sbdeploy.backends.ort import OrtRunner, SessionSettings
from sbdeploy.bench.machine import MachineLoad, MachineUsage
from sbdeploy.bench.timing import TimingPlan
from sbdeploy.errors import ConfigError
from sbdeploy.export.metadata import read_metadata
from sbdeploy.export.onnx_export import export_source
from sbdeploy.files import describe_file
from sbdeploy.pipeline.run import PipelineOptions, tune_options
from sbdeploy.sources import resolve_source
from sbdeploy.targets import get_target
from sbdeploy.tune import (
    Candidate,
    CandidateTime,
    StageRecord,
    TuneOptions,
    TuneResult,
    choose,
    session_candidates,
    tune_budget_options,
    tune_export,
    tune_files,
    tuning_markdown,
)
from tests.conftest import kernel_library

TINY_PLAN = TimingPlan(warmup_iters=1, iters=16, turn=2, settle=1)
"""8 rounds of 2 runs: the fewest that give intervals, a fraction of a second on a tiny network."""
SIZE = (16, 16)
TWO_SETTINGS = (SessionSettings.default(1), SessionSettings(intra_op_threads=1, spinning=False, threads=1))


@pytest.fixture(scope="module")
def tiny_sb():  # noqa: ANN201
    """cifar_resnet20_sb with fixed random weights, as the export code path takes it."""
    return resolve_source("cifar_resnet20_sb")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_sb, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """Its ort-cpu form at batch 1 (the rule's: stacked), exported once for the tests that time one file."""
    out = tmp_path_factory.mktemp("tiny") / "a.onnx"
    return export_source(tiny_sb, {"fp32": out}, target="ort-cpu", batch=1, input_size=SIZE)["fp32"].path


def test_session_candidates_start_with_the_default() -> None:
    two = session_candidates(2)
    assert two[0] == SessionSettings.default(2) == SessionSettings(intra_op_threads=2, threads=2)
    assert len(set(two)) == len(two) and all(s.threads == 2 for s in two)
    assert {s.intra_op_threads for s in two} == {1, 2} and any(s.execution_mode == "parallel" for s in two)
    assert any(not s.spinning for s in two) and any(s.optimization == "extended" for s in two)
    one = session_candidates(1)
    assert one[0] == SessionSettings.default(1) and all(
        s.intra_op_threads == 1 and s.execution_mode == "sequential" for s in one
    )
    options = TuneOptions(threads=2, settings=(SessionSettings(intra_op_threads=1, threads=2),))
    assert options.session_settings()[0] == SessionSettings.default(2)  # the default is always a candidate, first


def _time(candidate: Candidate, median: float, speedup: float, low: float | None, high: float | None) -> CandidateTime:
    return CandidateTime("settings", candidate, median, None, None, 0.1, 20, speedup, low, high)


def test_choose_keeps_the_fastest_only_when_it_is_surely_faster() -> None:
    default = Candidate("ort-cpu", "subpixel+phase-runs", SessionSettings.default(2))
    other = Candidate("ort-cpu:taps", "subpixel+phase-runs:taps", SessionSettings(intra_op_threads=1, threads=2))
    slower = Candidate("ort-cpu:stacked", "subpixel+phase-runs:stacked", SessionSettings.default(2))
    sure = [_time(default, 1.0, 1.0, None, None), _time(other, 0.8, 1.25, 1.1, 1.4), _time(slower, 1.5, 0.67, 0.6, 0.7)]
    chosen, why = choose(sure, default)
    assert chosen == other and "1.250x the untuned default" in why
    unsure = [_time(default, 1.0, 1.0, None, None), _time(other, 0.95, 1.05, 0.97, 1.12)]
    chosen, why = choose(unsure, default)
    assert chosen == default and "not surely faster" in why
    no_interval = [_time(default, 1.0, 1.0, None, None), _time(other, 0.5, 2.0, None, None)]
    assert choose(no_interval, default)[0] == default
    fastest_default = [_time(default, 0.7, 1.0, None, None), _time(other, 0.8, 0.875, 0.8, 0.9)]
    assert choose(fastest_default, default) == (default, "the untuned default was the fastest")
    assert choose([], default)[0] == default


def test_far_slower_candidates_are_dropped_before_the_turns(tiny_onnx: Path) -> None:
    """A candidate run 50 times per call (a stand-in for a far slower setting) is screened out, never chosen."""
    from sbdeploy import tune

    path = tiny_onnx
    default, slow = (Candidate("ort-cpu", "subpixel+phase-runs", s) for s in TWO_SETTINGS)
    feed = {"input": np.zeros((1, 3, *SIZE), np.float32)}
    calls = []

    class Slowed(OrtRunner):
        def timed_call(self, feed):  # noqa: ANN001, ANN202
            run = super().timed_call(feed)
            repeat = 50 if self.requested_session == slow.settings else 1
            calls.append(repeat)
            return lambda: [run() for _ in range(repeat)][-1]

    original = tune.OrtRunner
    tune.OrtRunner = Slowed  # type: ignore[misc]
    try:
        times, record = tune._time_stage(
            "settings", {default: path, slow: path}, default, feed, TuneOptions(plan=TINY_PLAN), "fp32", None
        )
    finally:
        tune.OrtRunner = original  # type: ignore[misc]
    assert sorted(calls) == [1, 50] and [t.candidate for t in times] == [default, slow]
    assert times[1].screened and times[1].speedup < 1 / TuneOptions().screen and not times[0].screened
    assert choose(times, default)[0] == default and record.rounds == 8  # the group timed the default alone
    assert "dropped, far slower" in times[1].cells()[2]


def test_forms_with_one_graph_are_timed_once(tiny_onnx: Path, tmp_path: Path) -> None:
    path = tiny_onnx
    copy = shutil.copy(path, tmp_path / "b.onnx")
    options = TuneOptions(threads=1, plan=TINY_PLAN, settings=TWO_SETTINGS)
    result = tune_files(
        {"ort-cpu": path, "ort-cpu:taps": Path(copy)},
        target=get_target("ort-cpu"),
        precision="fp32",
        batch=1,
        input_shape=(3, *SIZE),
        options=options,
    )
    forms = [t for t in result.times if t.stage == "forms"]
    assert [(t.candidate.form, t.same_graph_as, t.median_ms) for t in forms] == [("ort-cpu:taps", "ort-cpu", None)]
    assert [s.stage for s in result.stages] == ["settings"]  # one distinct form: only its settings are timed
    assert {t.candidate.settings for t in result.times if t.stage == "settings"} == set(TWO_SETTINGS)
    with pytest.raises(ConfigError, match="needs the row's own form ort-cpu first"):
        tune_files(
            {"ort-cpu:taps": path}, target=get_target("ort-cpu"), precision="fp32", batch=1, input_shape=(3, *SIZE)
        )


@pytest.mark.slow
def test_tuned_export_writes_the_chosen_form_its_settings_and_the_table(tiny_sb, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "tuned.onnx"
    options = TuneOptions(
        threads=1, plan=TINY_PLAN, variants=("taps",), settings=TWO_SETTINGS, screen=float("inf")
    )  # nothing screened
    ((result, tuning),) = tune_export(
        tiny_sb, {"fp32": out}, target="ort-cpu", batch=1, input_size=SIZE, options=options
    ).values()
    rule = "fused:fused" if kernels.is_built() else "subpixel+phase-runs"  # the rule's form, as the file says
    default = Candidate("ort-cpu", rule, SessionSettings.default(1))
    assert tuning.default == default and tuning.threads == 1
    by_stage = {stage: [t.candidate for t in tuning.times if t.stage == stage] for stage in ("forms", "settings")}
    assert [c.form for c in by_stage["forms"]] == [
        "ort-cpu",
        "ort-cpu:taps",
    ]  # the rule's stacked form and the exact taps
    assert (
        default in by_stage["forms"] and default in by_stage["settings"]
    )  # the untuned default is timed in both stages
    assert len(by_stage["settings"]) == 4 and tuning.chosen in by_stage["settings"]  # 2 finalists x 2 settings
    last = {t.candidate: t for t in tuning.times if t.stage == "settings"}
    assert all(
        t.median_ms is not None and t.low_ms is not None for t in last.values()
    )  # 8 rounds: every figure has an interval
    assert tuning.chosen == default or last[tuning.chosen].speedup_low > 1.0  # kept only when surely faster
    assert [s.stage for s in tuning.stages] == ["forms", "settings"] and all(
        s.machine.before.cpus_available for s in tuning.stages
    )

    metadata = read_metadata(out)
    assert result.path == out and result.metadata == metadata and metadata["lowering"] == tuning.chosen.lowering
    assert metadata["ort_session"] == tuning.chosen.settings.to_dict()
    record = metadata["tuning"]
    assert (
        record["tuned"] is True
        and record["chosen"]["form"] == tuning.chosen.form
        and record["decision"] == tuning.decision
    )
    assert len(record["candidates"]) == len(tuning.times) and all(
        "machine" in s and s["stop"] for s in record["stages"]
    )
    with OrtRunner(out) as runner:  # the file's settings travel with it
        assert runner.session_settings == tuning.chosen.settings
        x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
        got = runner.infer({"input": x})["logits"]
    with torch.no_grad():
        expected = tiny_sb.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    page = tuning_markdown([(out.name, tuning)])
    assert "**(chosen)**" in page and page.count("| settings |") == 4 and "load" in page
    assert ("**warning**: tuned on a busy machine" in page) == (tuning.busy_warning() is not None)


def test_a_choice_made_on_a_busy_machine_says_so() -> None:
    default = Candidate("ort-cpu", "subpixel+phase-runs", TWO_SETTINGS[0])
    load = MachineLoad((3.5, 3, 3), 2, 2)
    machine = MachineUsage(load, dataclasses.replace(load, loadavg=(3.6, 3, 3)), 8.0, 0.6, 1.35)
    quiet = StageRecord("settings", 10, 8.0, "budget spent", machine)
    busy = dataclasses.replace(quiet, busy=("other processes used 1.35 of the 2 CPUs while it was timed",))
    result = TuneResult("ort-cpu", "fp32", 1, 2, default, default, "kept", (), (quiet,))
    assert result.busy_warning() is None and result.to_metadata()["busy_machine"] is None
    result = dataclasses.replace(result, stages=(quiet, busy))
    assert "1.35 of the 2 CPUs" in result.busy_warning() and "tune again on a quiet machine" in result.busy_warning()
    assert result.to_metadata()["busy_machine"] == result.busy_warning()
    page = tuning_markdown([("a.onnx", result)])
    assert f"- **warning**: {result.busy_warning()}" in page and "load 3.50 -> 3.60, others' CPU 1.35 of 2" in page


def test_refusals(tiny_sb, tmp_path: Path) -> None:  # noqa: ANN001
    out = {"fp32": tmp_path / "x.onnx"}
    with pytest.raises(ConfigError, match="--tune applies to .*ort-cpu.*not grouped"):
        tune_export(tiny_sb, out, target="grouped", batch=1)
    with pytest.raises(ConfigError, match="give --target ort-cpu, not ort-cpu:taps"):
        tune_export(tiny_sb, out, target="ort-cpu:taps", batch=1)
    with pytest.raises(ConfigError, match="fixed batch: give --batch N"):
        tune_export(tiny_sb, out, target="ort-cpu", batch="dynamic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="has no forms \\['tap'\\]"):
        tune_export(tiny_sb, out, target="ort-cpu", batch=1, options=TuneOptions(variants=("tap",)))
    assert not out["fp32"].exists()


def test_the_artifact_path_tunes_fixed_batch_cpu_files_only(tiny_sb, tmp_path: Path) -> None:  # noqa: ANN001
    plans, _ = plan_artifacts([("sb", "model")], ["ort-cpu"], [1])
    options = TuneOptions(threads=1, plan=TINY_PLAN, variants=(), settings=TWO_SETTINGS[:1])
    tuned: dict = {}
    made = make_artifacts(plans, {"sb": tiny_sb}, tmp_path, input_sizes={"sb": SIZE}, tune=options, tuned=tuned)
    assert set(tuned) == set(made) == {"model.ort-cpu.b1.fp32.onnx"}
    assert describe_file(tmp_path / "model.ort-cpu.b1.fp32.onnx").metadata["tuning"]["tuned"] is True
    untuned = make_artifacts(plans, {"sb": tiny_sb}, tmp_path / "plain", input_sizes={"sb": SIZE})
    record = untuned["model.ort-cpu.b1.fp32.onnx"].metadata["tuning"]
    rule = "fused SB operator" if kernels.is_built() else "stacked below"  # the rule's form, fused where built
    assert record["tuned"] is False and rule in record["rule"]  # the file says its form was not timed
    assert tune_options(PipelineOptions()) is None
    assert tune_options(PipelineOptions(tune=tune_budget_options(3.0), threads=2)) == dataclasses.replace(
        TuneOptions(threads=2), plan=dataclasses.replace(TuneOptions().plan, budget_s=3.0)
    )
    assert tune_options(PipelineOptions(tune=TuneOptions(threads=1), threads=2)) == TuneOptions(threads=1)


def test_tuning_fp16_with_the_fused_form_times_the_rows_form_for_it(tiny_sb, tmp_path: Path) -> None:  # noqa: ANN001
    """The fused op has no fp16: tuned together, the fp16 file of the fused candidate takes the row's own form."""
    kernel_library()
    options = TuneOptions(threads=1, plan=TINY_PLAN, variants=("fused",), settings=TWO_SETTINGS[:1])
    outputs = {"fp32": tmp_path / "m.fp32.onnx", "fp16": tmp_path / "m.fp16.onnx"}
    results = tune_export(tiny_sb, outputs, target="ort-cpu", batch=1, input_size=SIZE, options=options)
    assert results["fp32"][0].metadata["lowering"].startswith("fused") and results["fp32"][0].ops["SBConv"] == 9
    assert "SBConv" not in results["fp16"][0].ops and results["fp16"][0].metadata["lowering"].startswith("subpixel")


def test_ov_cpu_tunes_its_portable_forms_on_openvino_in_the_precision_asked(tiny_sb, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("openvino", reason="OpenVINO absent: pip install sbdeploy[openvino]")
    from sbdeploy.backends.openvino import OpenVinoRunner, cpu_capabilities, load_openvino
    from sbdeploy.tune import _runner

    if "BF16" not in cpu_capabilities(load_openvino().Core()):
        pytest.skip("this CPU's OpenVINO plugin offers no BF16")
    out = tmp_path / "ov.onnx"
    options = TuneOptions(threads=1, plan=TINY_PLAN, variants=("gather",), screen=float("inf"))
    ((result, tuning),) = tune_export(
        tiny_sb, {"bf16": out}, target="ov-cpu", batch=1, input_size=SIZE, options=options
    ).values()
    default = Candidate("ov-cpu", "subpixel+phase-runs", None)  # no session settings: OpenVINO's runner
    assert tuning.default == default and tuning.precision == "bf16"
    assert [t.candidate.form for t in tuning.times] == ["ov-cpu", "ov-cpu:gather"]
    assert [s.stage for s in tuning.stages] == ["forms"]  # no settings stage: the forms stage chooses
    assert tuning.chosen in {t.candidate for t in tuning.times}
    assert tuning.chosen == default or next(t for t in tuning.times if t.candidate == tuning.chosen).speedup_low > 1
    candidate_runner = _runner(tuning.chosen, out, 1, tuning.precision)  # what timed each candidate
    assert (
        isinstance(candidate_runner, OpenVinoRunner)
        and candidate_runner.properties()["INFERENCE_PRECISION_HINT"] == "bf16"
    )
    metadata = read_metadata(out)
    assert metadata["precision"] == "fp32" and metadata["target"] == "ov-cpu"  # bf16 is a hint on the fp32 file
    assert "ort_session" not in metadata and metadata["tuning"]["precision"] == "bf16"
    assert metadata["lowering"] == tuning.chosen.lowering and result.sha256
    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    with OpenVinoRunner(out, threads=1) as runner:  # the written file in f32 is exact
        got = runner.infer({"input": x})["logits"]
    with torch.no_grad():
        expected = tiny_sb.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert "| OpenVINO |" in tuning_markdown([(out.name, tuning)])


def test_ov_cpu_refusals(tiny_sb, tmp_path: Path) -> None:  # noqa: ANN001
    from sbdeploy.flow import ExportOptions

    out = {"fp32": tmp_path / "x.onnx"}
    with pytest.raises(ConfigError, match="has no forms \\['fused'\\]"):  # OpenVINO cannot run the fused op
        tune_export(tiny_sb, out, target="ov-cpu", batch=1, options=TuneOptions(variants=("fused",)))
    with pytest.raises(ConfigError, match="target ov-cpu offers fp32, bf16, int8, not 'fp16'"):
        tune_export(tiny_sb, {"fp16": out["fp32"]}, target="ov-cpu", batch=1)
    with pytest.raises(ConfigError, match="run-time setting of its fp32 file"):
        ExportOptions(target="ov-cpu", precisions=("fp32", "bf16"), batch=1)
    assert ExportOptions(target="ov-cpu", precisions=("fp32", "bf16"), batch=1, tune=True).precisions[-1] == "bf16"
    with pytest.raises(ConfigError, match="give one of them"):
        ExportOptions(target="ov-cpu", precisions=("fp32", "int8", "bf16"), batch=1, tune=True)
    assert not out["fp32"].exists()
