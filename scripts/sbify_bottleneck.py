"""Measure sbify's bottleneck initialisation on a small bottleneck ResNet trained on digits.

The zoo's bottleneck networks (cifar_resnet164, resnet50...) are too slow to train on a
2-core CPU, so this script registers, for its own process only, a 29-layer pre-activation
bottleneck CIFAR ResNet (depth 9n+2, n=3) and its SB twin, trains the baseline with the
shipped digits recipe (6 epochs, batch 64, seed 0), then converts it with
``sbify_checkpoint`` and reports the test accuracy after mapping, after BN recalibration
and after fine-tuning, for the least-squares fit on calibration images, the data-free fit
on noise, and a fresh (random) linear SB as the control; ``--scratch`` adds the SB twin
trained from scratch (6 epochs). CPU times are this process's user + system time per run
(``resource.getrusage``); ``results.json`` in ``--work`` holds every figure. Usage::

    nice -n 10 .venv/bin/python scripts/sbify_bottleneck.py --work /tmp/sbify_bottleneck [--scratch]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.convert import convert, sbify_checkpoint
from sbdeploy.convert.run import FINE_TUNE
from sbdeploy.data import open_source
from sbdeploy.models import create_model
from sbdeploy.models._registry import register_model
from sbdeploy.models.resnet_cifar import CifarResNet
from sbdeploy.nn.blocks import PreActBottleneck, SBPreActBottleneck
from sbdeploy.nn.sb import SpatialBottleneck
from sbdeploy.train import TrainConfig, calibration_images, measure_accuracy, recalibrate_bn, train

BASELINE, SB = "cifar_resnet29_bottleneck", "cifar_resnet29_bottleneck_sb"


@register_model("cifar")
def cifar_resnet29_bottleneck(*, num_classes: int = 10, in_chans: int = 3) -> torch.nn.Module:
    return CifarResNet(PreActBottleneck, 29, num_classes=num_classes, in_chans=in_chans)


@register_model("cifar", baseline=BASELINE)
def cifar_resnet29_bottleneck_sb(
    *, num_classes: int = 10, in_chans: int = 3, sampling: str = "chessboard"
) -> torch.nn.Module:
    return CifarResNet(SBPreActBottleneck, 29, num_classes=num_classes, in_chans=in_chans, sampling=sampling)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sbify_bottleneck"))
    parser.add_argument("--reuse-baseline", action="store_true", help="keep a baseline already trained in --work")
    parser.add_argument("--scratch", action="store_true", help="also train the SB twin from scratch (6 epochs)")
    parser.add_argument(
        "--smoke", action="store_true", help="2 steps per epoch: check the script runs, measure nothing"
    )
    args = parser.parse_args()
    data = open_source("digits")
    steps = 2 if args.smoke else None
    recipe = TrainConfig(epochs=1 if args.smoke else 6, batch_size=64, seed=0, max_steps_per_epoch=steps)
    rows: list[dict[str, object]] = []

    def timed(name: str, call):  # type: ignore[no-untyped-def]
        start_cpu, start_wall = cpu_s(), time.perf_counter()
        result = call()
        rows.append(
            {
                "run": name,
                "cpu_s": round(cpu_s() - start_cpu, 1),
                "wall_s": round(time.perf_counter() - start_wall, 1),
                "load": [round(v, 2) for v in os.getloadavg()],
            }
        )
        return result

    def save() -> None:
        (args.work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")

    base_dir = args.work / "baseline"
    if args.reuse_baseline:
        rows.append({"run": "baseline, 6 epochs from scratch (reused)", **load_checkpoint(base_dir).config.metrics})
        rows[-1].pop("history")
    else:
        base = timed(
            "baseline, 6 epochs from scratch",
            lambda: train(BASELINE, data, base_dir, recipe, overwrite=True, device="cpu"),
        )
        rows[-1]["test_accuracy"] = base.test_accuracy
    save()
    fine = TrainConfig(**{**FINE_TUNE.__dict__, "batch_size": 64, "max_steps_per_epoch": steps})
    for fit in ("calibration", "noise"):
        for epochs, distill in ((0, False), (1, False), (2, False)):
            if fit == "noise" and epochs == 2:
                continue
            name = f"sbify ({fit} fit), {epochs} fine-tune epochs" + (", distilled" if distill else "")
            result = timed(
                name,
                lambda: sbify_checkpoint(
                    base_dir,
                    args.work / f"{fit}_{epochs}_{int(distill)}",
                    data=data,
                    bottleneck_fit=fit,
                    overwrite=True,
                    device="cpu",
                    fine_tune=TrainConfig(**{**fine.__dict__, "epochs": epochs}) if epochs else None,
                    distill=(0.5, 4.0) if distill else None,
                ),
            )
            rows[-1].update(stages={s.name: s.test_accuracy for s in result.stages}, fit_error=result.bottleneck_error)
            save()

    # control: the same conversion with the linear SBs left at a fresh initialisation (the from-scratch one)
    def control() -> dict[str, float]:
        model = convert(load_checkpoint(base_dir).model, "chessboard").model
        fresh = [m for m in create_model(SB, num_classes=10, in_chans=1).modules() if isinstance(m, SpatialBottleneck)]
        with torch.no_grad():
            for sb, new in zip((m for m in model.modules() if isinstance(m, SpatialBottleneck)), fresh):
                sb.conv.weight.copy_(new.conv.weight)
                sb.deconv.weight.copy_(new.deconv.weight)
        acc = {"mapped": measure_accuracy(model, data.test_images, data.test_labels, data.mean, data.std).top1}
        recalibrate_bn(model, calibration_images(data, 2048), data.mean, data.std)
        acc["recalibrated"] = measure_accuracy(model, data.test_images, data.test_labels, data.mean, data.std).top1
        tuned = train(
            SB,
            data,
            args.work / "random_sb_ft1",
            TrainConfig(**{**fine.__dict__, "epochs": 1}),
            overwrite=True,
            device="cpu",
            init_state=model.state_dict(),
        )
        acc["fine-tuned"] = tuned.test_accuracy
        return acc

    stages = timed("control: random linear SBs, recalibrated, 1 fine-tune epoch", control)
    rows[-1]["stages"] = stages
    save()
    if args.scratch:
        scratch = timed(
            "SB twin, 6 epochs from scratch",
            lambda: train(SB, data, args.work / "scratch", recipe, overwrite=True, device="cpu"),
        )
        rows[-1]["test_accuracy"] = scratch.test_accuracy
    save()
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
