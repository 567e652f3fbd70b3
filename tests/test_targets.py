"""The deploy-target table: its rows are consistent, and every target's form is the dense reference.

``test_every_target_form_equals_the_dense_reference`` runs, in float64 at 1e-10 of the
logits' scale, every distinct form of the table (targets whose lowering and layout are
equal share one form: ``ort-cuda`` and ``trt``) x every SB block family (the small
members of ``tests/export/families.py``) x every sampling set x where the SB blocks are
(every stage, none, one stage between dense ones), each at an even size (every
block on phases) and an odd one (the per-SB lowering), in each layout a phase run has: the
exact tap convs (a dynamic batch) and the stacked layout (a small fixed batch, stackable
families); the fast tier runs a covering subset (``tests.conftest.cross``). The exported forms on ONNX
Runtime are ``tests/export/test_export_targets.py``.
"""

from __future__ import annotations

import pytest
import torch

from sbdeploy.backends.factory import RUNNERS
from sbdeploy.errors import ConfigError
from sbdeploy.int8_recipe import INT8_RECIPES, ORT_CPU_INT8, TRT_INT8
from sbdeploy.nn.lowering import LOWERINGS
from sbdeploy.nn.phase import PhaseRun
from sbdeploy.nn.sampling import SAMPLINGS
from sbdeploy.nn.sb import reference_mode
from sbdeploy.passes import DEFAULT_PASSES, PASSES
from sbdeploy.targets import (
    BACKEND_TARGETS,
    CANONICAL,
    PRECISIONS,
    TARGETS,
    artifact_filename,
    get_target,
    target_for,
    target_option,
)
from sbdeploy.tolerance import DEFAULT_TOLERANCES
from tests.conftest import cross
from tests.export.families import FAMILIES, PLACEMENTS, build, distinct_forms

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = {"cifar": ((16, 16), (13, 11)), "imagenet": ((32, 32), (49, 37)), "pyramid": ((16, 16), (13, 11))}
"""Per family kind: an even size (the first blocks run on phases; ImageNet's 1x1 last stage cannot) and an
odd one (the per-SB lowering). One image: torch's float64 depthwise convs (the phase split) are slow."""


def test_every_row_names_real_things() -> None:
    assert set(TARGETS) == {"grouped", "separate", "ort-cpu", "ov-cpu", "ort-cuda", "trt"} and CANONICAL in TARGETS
    for target in TARGETS.values():
        assert target.lowering in LOWERINGS, target.name
        assert set(target.passes) <= set(PASSES) and target.passes[: len(DEFAULT_PASSES)] == DEFAULT_PASSES, target.name
        assert target.backends and set(target.backends) <= set(RUNNERS), target.name
        assert set(target.precisions) <= set(PRECISIONS) and all(p in target.tolerances for p in target.precisions), (
            target.name
        )
        assert not target.per_batch or target.layout.phase_runs, (
            "only a layout that depends on the batch needs one file per batch"
        )
    for backend, name in BACKEND_TARGETS.items():
        assert backend in TARGETS[name].backends and target_for(backend).name == name
    assert get_target("trt").build_options("fp32") == {"precision": "fp32", "tf32": False}  # the fp32 parity engine
    assert get_target("trt").build_options("fp16") == {"precision": "fp16"}
    assert get_target("ort-cpu").form == "subpixel+phase-runs" and get_target("trt").form == "strided"


def test_every_target_offers_int8_by_a_named_recipe() -> None:
    for target in TARGETS.values():
        assert "int8" in target.precisions and target.int8 in INT8_RECIPES.values(), target.name
        assert target.tolerance("int8") == DEFAULT_TOLERANCES["int8"], target.name
    # ONNX Runtime CPU: the form measured fastest there (uint8 activations, int8 weights); TensorRT and ONNX Runtime
    # CUDA: explicit quantization, symmetric s8s8 per-channel QDQ, float bias; the canonical forms too (portable)
    assert get_target("ort-cpu").int8 is ORT_CPU_INT8 and ORT_CPU_INT8.activation_type == "uint8"
    for name in ("ort-cuda", "trt", "grouped", "separate"):
        recipe = get_target(name).int8
        assert recipe is TRT_INT8 and recipe.format == "qdq" and recipe.per_channel and not recipe.quantize_bias
        assert (
            (recipe.activation_type, recipe.weight_type) == ("int8", "int8")
            and recipe.activation_symmetric
            and recipe.weight_symmetric
        )
    assert get_target("trt").build_options("int8") == {"precision": "int8"}


def test_variants_are_exact_forms_of_their_row() -> None:
    row = get_target("ort-cpu")
    candidates = row.candidates(kernels_built=True)
    assert candidates[0] is row and [c.variant for c in candidates] == [
        None,
        *row.variants,
    ]  # the untuned default first
    assert [c.variant for c in row.candidates(kernels_built=False)] == [
        None,
        *(v for v in row.variants if v != "fused"),
    ]
    assert len({c.form for c in candidates}) == len(candidates)  # every form has its own name in the metadata
    for form in candidates:
        assert form.lowering in LOWERINGS and form.name == "ort-cpu" and form.passes == row.passes
        assert get_target(form.spec).form == form.form  # the spec names exactly this form
    stacked = get_target("ort-cpu:stacked")
    assert stacked.form == "subpixel+phase-runs:stacked" and stacked.variant == "stacked"
    assert (
        stacked.with_variant(None) is row
        and artifact_filename("model", stacked.name, "fp32", batch=1) == "model.ort-cpu.b1.fp32.onnx"
    )
    with pytest.raises(ConfigError, match="target ort-cpu has no form 'stacke' \\(did you mean stacked\\?\\)"):
        get_target("ort-cpu:stacke")
    with pytest.raises(ConfigError, match="target trt has no form 'taps'.*its variants: none"):
        get_target("trt:taps")


def test_the_rule_fuses_what_the_fused_nodes_compute_in_where_the_kernel_library_is_built() -> None:
    row, fused = get_target("ort-cpu"), get_target("ort-cpu:fused")
    for precision in ("fp32", "bf16", "int8"):
        assert row.by_rule(precision, kernels_built=True) == fused and fused.lowering == "fused"
    assert row.by_rule("fp32", kernels_built=False) is row
    with pytest.raises(ConfigError, match="bf16 on ort-cpu is computed by the fused SB kernel, and sbdeploy's kernel"):
        row.by_rule("bf16", kernels_built=False)
    with pytest.raises(ConfigError, match="bf16 files of ort-cpu are its fused form: give --target ort-cpu"):
        get_target("ort-cpu:taps").by_rule("bf16", kernels_built=True)
    assert row.by_rule("int8", kernels_built=False) is row  # ONNX Runtime's QDQ kernels run the row's own form
    assert row.by_rule("fp16", kernels_built=True) is row  # no fp16 in the fused op
    assert fused.by_rule("int8", True) is fused and fused.by_rule("fp16", True) is row
    taps = get_target("ort-cpu:taps")
    assert taps.by_rule("fp32", kernels_built=True) is taps  # a named variant is never replaced
    assert get_target("trt").by_rule("fp32", kernels_built=True) is get_target("trt")


def test_names_and_refusals() -> None:
    assert artifact_filename("model", "grouped", "fp32") == "model.onnx"
    assert artifact_filename("model", "ort-cpu", "fp32", batch=1) == "model.ort-cpu.b1.fp32.onnx"
    assert artifact_filename("baseline", "ort-cpu", "fp16", batch=8) == "baseline.ort-cpu.b8.fp16.onnx"
    assert artifact_filename("model", "trt", "fp16", engine=True) == "model.trt.fp16.engine"
    assert artifact_filename("model", "grouped", "fp16") == "model.grouped.fp16.onnx"
    with pytest.raises(
        ConfigError, match="did you mean ort-cpu.*choose one of grouped, separate, ort-cpu, ort-cuda, trt"
    ):
        get_target("ort-cp")
    assert artifact_filename("model", "ort-cpu", "int8", batch=1) == "model.ort-cpu.b1.int8.onnx"
    with pytest.raises(ConfigError, match=r"offers fp32, fp16, int8, not 'bf16'$"):  # ort-cpu's: its fused nodes'
        get_target("trt").check_precision("bf16")
    with pytest.raises(
        ConfigError, match=r"offers fp32, fp16, int8, bf16, not 'fp8' \(sbdeploy knows fp32, fp16, int8, bf16\)"
    ):
        get_target("ort-cpu").check_precision("fp8")
    with pytest.raises(ConfigError, match="target ort-cpu is run by ort-cpu, not by trt"):
        target_for("trt", "ort-cpu")
    assert target_for("trt", "grouped").name == "grouped"  # the canonical form runs everywhere


def test_the_old_lowering_flag_keeps_working_or_names_the_new_spelling() -> None:
    assert target_option(None, "grouped") == "grouped" and target_option("separate", "separate") == "separate"
    assert target_option("ort-cpu") == "ort-cpu" and target_option(None) is None
    with pytest.raises(ConfigError, match="no longer exists.*--target grouped"):
        target_option(None, "subpixel")
    with pytest.raises(ConfigError, match="old spelling of --target grouped; give --target only"):
        target_option("trt", "grouped")


@pytest.mark.parametrize(
    ("family", "sampling", "form", "placement"),
    cross(list(FAMILIES), list(SAMPLINGS), distinct_forms(with_passes=False), list(PLACEMENTS)),
)
def test_every_target_form_equals_the_dense_reference(family: str, sampling: str, form: str, placement: str) -> None:
    model = build(family, sampling, placement=placement).double()
    deployed = get_target(form).deploy_form(model)
    runs = [m for m in deployed.modules() if isinstance(m, PhaseRun)]
    # a run takes two SB blocks in a row or more: these families' one stage has one block, so only "all" has runs
    assert bool(runs) == (get_target(form).layout.phase_runs and placement == "all")
    for size in SIZES[family.split("_")[0]]:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        with torch.no_grad(), reference_mode(model):
            ref = model(x)
        layouts = ["phases"] + (["stacked"] if any(r.stacked is not None for r in runs) else [])
        for layout in layouts:  # the dynamic-batch layout, and the stacked one a small fixed batch takes
            for run in runs:
                run.layout = layout if run.stacked is not None else "phases"
            with torch.no_grad():
                out = deployed(x)
            error = (out - ref).abs().max().item()
            assert error <= 1e-10 * max(1.0, ref.abs().max().item()), f"{form} {size} {layout}: {error:.3g}"
        if runs and placement == "all":  # the even size runs the first blocks on phases, the odd size none
            run_input = (size[0] // 4, size[1] // 4) if family.startswith("imagenet") else size
            assert runs[0].plan(run_input)[0] == (size == SIZES[family.split("_")[0]][0])
