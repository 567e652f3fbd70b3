"""One answer to "is there a GPU, which TensorRT": environment.gpu_stack, shared by doctor, pipeline, sidecar and reports.

Checked for real on this machine (no GPU, no TensorRT: every probe says why), on the
combining rules (the GPU may be seen by pycuda, cuda-python, torch or nvidia-smi alone:
a CPU build of torch on a GPU machine must not hide the GPU), and that every consumer
follows the one probe: given one machine's answer, doctor, the pipeline's engine choice,
the engine sidecar's machine and the environment recorded in reports all agree.
"""

from __future__ import annotations

import shutil

import pytest

from sbdeploy import environment
from sbdeploy.environment import GpuStack, combine_probes

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def _ready(**changes: object) -> GpuStack:
    fields = dict(
        gpu_name=H100[0],
        compute_capability=H100[1],
        gpu_found_by="pycuda",
        driver="580.95.05",
        cuda_runtime="12.8",
        cuda_driver="13.0",
        torch_cuda=None,
        tensorrt="10.13.0.35",
        tensorrt_problem=None,
        pycuda="2025.1",
        pycuda_problem=None,
    )
    return GpuStack(**{**fields, **changes})  # type: ignore[arg-type]


def test_this_machine_without_gpu_or_tensorrt() -> None:
    if shutil.which("nvidia-smi") or environment.gpu_stack().has_gpu:
        pytest.skip("this machine has an NVIDIA GPU")
    stack = environment.gpu_stack()
    assert not stack.has_gpu and stack.gpu_name is None and not stack.trt_ready
    if stack.tensorrt is None:
        assert stack.tensorrt_problem and stack.tensorrt_problem.startswith("TensorRT is not installed")
        assert stack.why_not_trt().startswith("TensorRT is not installed")
    assert environment.gpu_stack() is environment.gpu_stack()  # probed once per process


def test_a_cpu_torch_does_not_hide_the_gpu() -> None:
    stack = combine_probes(
        nvidia_smi=("NVIDIA L4", "8.9", "570.86.10"),
        pycuda=("2025.1", None, None),
        cuda_python=None,
        torch=(None, None),
        tensorrt=("10.13.0.35", None),
    )
    assert stack.has_gpu and stack.gpu_name == "NVIDIA L4" and stack.gpu_found_by == "nvidia-smi"
    assert stack.compute_capability == "8.9" and stack.driver == "570.86.10" and stack.trt_ready


def test_probes_in_order_of_trust() -> None:
    stack = combine_probes(
        nvidia_smi=("NVIDIA H200", "9.0", "580.159.03"),
        pycuda=(None, "pycuda is not installed", ("NVIDIA H200 (pycuda)", "9.0", "12.8", "13.0")),
        cuda_python=("NVIDIA H200 (cuda-python)", "9.0", "13.0"),
        torch=("13.0", ("NVIDIA H200 (torch)", "9.0")),
        tensorrt=(None, "TensorRT is not installed"),
    )
    assert stack.gpu_found_by == "pycuda" and stack.cuda_runtime == "12.8" and stack.driver == "580.159.03"
    assert not stack.trt_ready and stack.why_not_trt() == "TensorRT is not installed"
    torch_only = combine_probes(
        nvidia_smi=None,
        pycuda=(None, "pycuda is not installed", None),
        cuda_python=None,
        torch=("13.0", ("NVIDIA H200", "9.0")),
        tensorrt=("11.4.0.106", None),
    )
    assert torch_only.gpu_found_by == "torch" and torch_only.cuda_runtime == "13.0"
    assert not torch_only.trt_ready and torch_only.why_not_trt() == "pycuda is not installed"


def test_every_consumer_follows_the_one_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with TensorRT, pycuda and a GPU, but a CPU build of torch: all four say so, the same way."""
    from sbdeploy.backends.tensorrt.sidecar import current_machine
    from sbdeploy.doctor import diagnose
    from sbdeploy.pipeline.run import engine_backend

    stack = _ready()
    monkeypatch.setattr(environment, "gpu_stack", lambda: stack)
    assert engine_backend()[0] == "trt"
    report = diagnose()
    assert (report.gpu_name, report.compute_capability, report.tensorrt) == (*H100, "10.13.0.35")
    assert {b.name: b.available for b in report.backends}["trt"]
    machine = current_machine()
    assert (machine.gpu_name, machine.compute_capability, machine.tensorrt_version) == (*H100, "10.13.0.35")
    assert machine.cuda_version == "12.8" and machine.driver_version == "13.0"
    assert environment.collect_environment().gpu == f"{H100[0]} (sm_90)"

    monkeypatch.setattr(
        environment, "gpu_stack", lambda: _ready(gpu_name=None, compute_capability=None, gpu_found_by=None)
    )
    backend, why = engine_backend()
    assert backend == "ort-cpu" and "no NVIDIA GPU" in why
    assert not {b.name: b.available for b in diagnose().backends}["trt"]


def test_cpu_int8_support_reads_the_instruction_set() -> None:
    from sbdeploy.environment import cpu_int8_support

    avx2 = cpu_int8_support("processor : 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert avx2.avx2 and not avx2.vnni and not avx2.int8_dot and "no VNNI" in avx2.describe()
    vnni = cpu_int8_support("flags : avx2 avx512f avx512_vnni amx_int8\n")
    assert vnni.vnni and vnni.amx_int8 and vnni.int8_dot and vnni.describe().endswith("int8 dot products in hardware")
    assert "AVX-512, VNNI, AMX-INT8" in vnni.describe() and "AVX2" not in vnni.describe()
    assert cpu_int8_support("flags : avx2 avx_vnni\n").vnni  # the AVX (VEX) form on client CPUs
    arm = cpu_int8_support("Features : fp asimd asimddp i8mm\n")
    assert arm.arm_dotprod and arm.arm_i8mm and arm.int8_dot
    assert not cpu_int8_support("").int8_dot and "no int8 dot-product instructions" in cpu_int8_support("").describe()
    env = environment.collect_environment()
    assert env.cpu_int8 == cpu_int8_support().describe() and env.cpu_int8_dot == cpu_int8_support().int8_dot
