"""A small sweep end to end (cifar_resnet20 on 8x8 synthetic images, one sampling set, batches 1 and 2), interrupted
once and resumed: its JSON, its front (exactly the non-dominated rows), its pick (the fastest row within P).

It times the ``grouped`` target (one dynamic-batch file per network: half the exports of ort-cpu's per-batch files);
the default target's sweep runs through the CLI in ``tests/cli/test_sweep_cli.py`` (slow tier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sbdeploy.checkpoint import WEIGHTS_FILE, load_checkpoint
from sbdeploy.data import open_source
from sbdeploy.errors import ConfigError
from sbdeploy.sweep import SweepOptions, run_sweep
from sbdeploy.sweep.front import binomial_interval
from sbdeploy.sweep.run import placements
from sbdeploy.train import TrainConfig, train

OPTIONS = SweepOptions(
    batches=(1, 2),
    max_drop=2.0,
    samplings=("chessboard",),
    budget_s=0.5,
    calibration_images=64,
    validate_limit=16,
    target="grouped",
)
ROW_KEYS = {
    "name", "sampling", "stages", "batch", "macs", "top1", "top1_low", "top1_high", "median_ms", "median_low_ms",
    "median_high_ms", "speedup", "speedup_low", "speedup_high", "checkpoint",
}  # fmt: skip


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, float]]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("sweep")
    data = open_source("synthetic", size=8)
    train("cifar_resnet20", data, root / "base", TrainConfig(epochs=1, batch_size=32, max_steps_per_epoch=3))
    sbified: list[str] = []

    def interrupt(stage: str, done: int, total: int) -> None:  # Ctrl-C at the second candidate's sbify
        if stage.startswith("sbify "):
            sbified.append(stage)
            if len(sbified) == 2:
                raise _Interrupt

    with pytest.raises(_Interrupt):
        run_sweep(root / "base", "synthetic", root / "out", OPTIONS, on_progress=interrupt)
    first = sbified[0].removeprefix("sbify ")
    kept = {first: (root / "out" / "candidates" / first / WEIGHTS_FILE).stat().st_mtime}
    again: list[str] = []
    run_sweep(root / "base", "synthetic", root / "out", OPTIONS, on_progress=lambda s, d, t: again.append(s))
    assert f"sbify {first}" not in again and not any(s.startswith("mapping ") for s in again)  # nothing redone
    assert (root / "out" / "candidates" / first / WEIGHTS_FILE).stat().st_mtime == kept[first]
    return root / "out", json.loads((root / "out" / "sweep.json").read_text()), kept


def test_rows_hold_every_candidate_at_every_batch_with_intervals(swept) -> None:  # type: ignore[no-untyped-def]
    out, report, _ = swept
    rows = report["rows"]
    assert all(ROW_KEYS <= set(r) for r in rows)
    names = {r["name"] for r in rows}
    assert {"baseline", "chessboard"} <= names and len(rows) == 2 * len(names)
    for r in rows:
        assert r["top1_low"] <= r["top1"] <= r["top1_high"]
        assert (r["top1_low"], r["top1_high"]) == pytest.approx(
            binomial_interval(round(r["top1"] * report["test_images"]), report["test_images"])
        )
        assert r["median_low_ms"] <= r["median_ms"] <= r["median_high_ms"]
        ckpt = load_checkpoint(r["checkpoint"])  # it goes straight into `sbdeploy pipeline`
        if r["name"] == "baseline":
            assert r["speedup"] == 1.0 and r["stages"] == [] and ckpt.config.arch == "cifar_resnet20"
        else:
            assert r["speedup_low"] <= r["speedup"] <= r["speedup_high"] and r["valid"]
            assert ckpt.config.sb_stages == (None if r["stages"] == [1, 2, 3] else tuple(r["stages"]))
            assert ckpt.config.sampling == r["sampling"] == "chessboard"
    for name in names:  # one accuracy per candidate, whatever the batch
        assert len({r["top1"] for r in rows if r["name"] == name}) == 1
    assert (out / "sweep.md").read_text().count("## Batch") == 2 and (out / "sweep.png").stat().st_size > 10_000


def test_stage_timing_decides_the_placements(swept) -> None:  # type: ignore[no-untyped-def]
    _, report, _ = swept
    timing = report["stage_timing"]
    assert {(t["sampling"], t["batch"], t["stage"]) for t in timing} == {
        ("chessboard", b, s) for b in (1, 2) for s in (1, 2, 3)
    }
    for t in timing:
        assert t["pays"] == (t["speedup_low"] > 1) and t["baseline_ms"] > 0
    from sbdeploy.sweep.run import StageTiming

    timings = [StageTiming(**{k: v for k, v in t.items() if k != "pays"}) for t in timing]
    expected = {tuple(p) for p in placements(timings, "chessboard", 3)}
    assert {tuple(r["stages"]) for r in report["rows"] if r["sampling"]} == expected
    assert (1, 2, 3) in expected and len(expected) >= 2  # every stage, and at least the least paying one dropped


def test_marked_front_is_exactly_the_non_dominated_rows(swept) -> None:  # type: ignore[no-untyped-def]
    _, report, _ = swept
    for batch in (1, 2):
        rows = [r for r in report["rows"] if r["batch"] == batch]
        non_dominated = {
            r["name"]
            for r in rows
            if not any(
                o["top1"] >= r["top1"]
                and o["median_ms"] <= r["median_ms"]
                and (o["top1"] > r["top1"] or o["median_ms"] < r["median_ms"])
                for o in rows
            )
        }
        assert {r["name"] for r in rows if r["front"]} == non_dominated == set(report["front"][str(batch)])


def test_pick_is_the_fastest_row_within_max_drop(swept) -> None:  # type: ignore[no-untyped-def]
    _, report, _ = swept
    assert report["max_drop"] == 2.0 and len(report["picks"]) == 2
    for pick in report["picks"]:
        rows = [r for r in report["rows"] if r["batch"] == pick["batch"]]
        base = next(r for r in rows if r["name"] == "baseline")
        within = [r for r in rows if r["valid"] and (base["top1"] - r["top1"]) * 100 <= 2.0 + 1e-9]
        fastest = min(within, key=lambda r: r["median_ms"])
        assert pick["name"] == fastest["name"] and pick["checkpoint"] == fastest["checkpoint"]
        assert pick["drop"] == pytest.approx((base["top1"] - fastest["top1"]) * 100, abs=1e-3)


def test_a_sweep_with_other_settings_is_refused_in_the_same_folder(swept) -> None:  # type: ignore[no-untyped-def]
    out, report, _ = swept
    before = (out / "sweep_state.json").read_text()
    other = SweepOptions(batches=(1,), samplings=("chessboard",))
    with pytest.raises(ConfigError, match="holds a sweep with other settings.*batches"):
        run_sweep(Path(report["baseline"]), "synthetic", out, other)
    assert (out / "sweep_state.json").read_text() == before


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"distill": True}, "--distill applies to the fine-tune"),
        ({"target": "trt"}, "does not run --target trt; choose grouped, separate, ort-cpu"),
        ({"tune": True, "target": "grouped"}, "has one form"),
        ({"max_drop": -1.0}, "--max-drop takes points"),
        ({"batches": ()}, "batch sizes must be >= 1"),
        ({"samplings": ("dense",)}, "tries the sampling sets"),
    ],
)
def test_options_that_cannot_be_honoured_are_refused(options: dict, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=says):
        SweepOptions(**options)


def test_a_mangled_state_file_is_one_error(swept, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, report, _ = swept
    (tmp_path / "sweep_state.json").write_text("{ half")
    with pytest.raises(ConfigError, match="sweep_state.json is not valid JSON; delete it"):
        run_sweep(Path(report["baseline"]), "synthetic", tmp_path, OPTIONS)
