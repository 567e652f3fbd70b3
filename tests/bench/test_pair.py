"""Timing a given pair of files, for real on ONNX Runtime: an A/A pair, and a pair timed on a busy machine.

These assert the honesty of the report, not a speed: a file against a copy of itself must
come out as "no faster, no slower" (its speedup interval holds 1.0 and no efficiency above
1 is claimed), and a run while other processes load every core must be flagged unstable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.bench.pair import bench_onnx_pair, bench_pair
from sbdeploy.bench.timing import TimingPlan
from sbdeploy.errors import ConfigError

BURN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end:\n    pass\n"  # bounded: stops by itself after 60 s


def conv_net(path: Path) -> Path:
    """Two 3x3 convolutions on 3x64x64 (about 0.4 ms on one core): a small real ONNX file, no export needed."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((32, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 32, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "w2"], ["logits"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 32, 64, 64])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def aa_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("aa")
    original = conv_net(folder / "net.onnx")
    return original, Path(shutil.copy(original, folder / "net_copy.onnx"))


MACS = 32 * 3 * 9 * 64 * 64 + 32 * 32 * 9 * 64 * 64


def test_a_file_against_a_copy_of_itself_is_no_faster_and_no_more_efficient(aa_pair: tuple[Path, Path]) -> None:
    original, copy = aa_pair
    report = bench_onnx_pair(
        copy, original, sb_macs=MACS, baseline_macs=MACS, threads=1, plan=TimingPlan(warmup_iters=5, budget_s=3.0)
    )
    row = next(r for r in report.rows if r.speedup is not None)
    assert (row.model, row.baseline, row.mac_ratio) == ("net_copy.onnx", "net.onnx", 1.0)
    interval, efficiency = row.speedup_interval, row.efficiency_interval
    assert interval is not None and efficiency is not None and row.efficiency == pytest.approx(row.speedup)
    machine_said_busy = bool({"busy", "load"} & {f.kind for f in row.flags})
    # A 95% interval misses 1.0 one time in twenty by design (CI saw 0.979-0.9995 on a quiet machine), so
    # the check is for what an A/A exists to catch, a bias: the interval comes within 2% of 1.0 (3% where the
    # report itself says the machine was busy), and no efficiency above 1 is flagged for equal MACs.
    slack = 0.03 if machine_said_busy else 0.02
    assert interval.low <= 1 + slack and interval.high >= 1 - slack, (row.speedup, interval, row.flags)
    assert efficiency.low <= 1 + slack and "efficiency" not in {f.kind for f in row.flags}
    group = report.groups[0].record
    assert group.rounds >= 20 and group.seconds >= 1.0  # adaptive: at least 20 turns and 1 s


@pytest.mark.skipif(
    not Path("/proc/stat").exists() or not hasattr(os, "sched_getaffinity"), reason="needs Linux /proc/stat"
)
def test_a_pair_timed_while_other_processes_load_every_core_is_flagged_unstable(aa_pair: tuple[Path, Path]) -> None:
    original, copy = aa_pair
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(len(os.sched_getaffinity(0)))]
    try:
        time.sleep(0.5)  # let them spin up
        report = bench_onnx_pair(
            copy, original, sb_macs=MACS, baseline_macs=MACS, threads=1, plan=TimingPlan(warmup_iters=2, budget_s=1.5)
        )
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()
    assert report.unstable and all(r.unstable for r in report.rows)
    busy = [f for f in report.groups[0].flags if f.kind == "busy"]
    assert busy and "other processes used" in busy[0].reason, report.groups[0].flags
    assert report.groups[0].record.machine.others_cpu > 0.5  # the burners, not this process
    assert any(w.flag.kind == "busy" and "quiet machine" in w.flag.advice for w in report.warnings())
    assert report.to_dict()["unstable"] is True


def test_callables_pair_and_refusals() -> None:
    report = bench_pair(
        lambda: None,
        lambda: None,
        sb_macs=50,
        baseline_macs=100,
        names=("half", "full"),
        plan=TimingPlan(warmup_iters=1, iters=40, turn=4),
    )
    sb = report.rows[0]
    assert (
        sb.model == "half"
        and sb.mac_ratio == 0.5
        and sb.speedup_interval is not None
        and report.groups[0].record.rounds == 10
    )
    with pytest.raises(ConfigError, match="different names"):
        bench_pair(lambda: None, lambda: None, sb_macs=1, baseline_macs=1, names=("a", "a"))
    with pytest.raises(ConfigError, match="positive"):
        bench_pair(lambda: None, lambda: None, sb_macs=0, baseline_macs=1)
