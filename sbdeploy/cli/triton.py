"""``sbdeploy triton-repo``: a Triton model repository from ONNX files and TensorRT engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sbdeploy.cli._render import console, print_json, warn
from sbdeploy.errors import ConfigError


def triton_repo(
    artifacts: Annotated[
        list[Path],
        typer.Argument(
            help="ONNX files, TensorRT engines (.engine/.plan + .json sidecar), or a `sbdeploy pipeline` run folder "
            "(its validated SB artifacts)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="The model repository folder.")],
    name: Annotated[str | None, typer.Option(help="Model name (single artifact; default: the file stem).")] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(help="max_batch_size (default: the engine profile's max; 32 for a dynamic ONNX batch).", min=0),
    ] = None,
    instances: Annotated[int, typer.Option(help="Instances per model (instance_group count).", min=1)] = 1,
    preferred_batch: Annotated[
        list[int] | None, typer.Option(help="Preferred batch size of the dynamic batcher (repeatable).", min=1)
    ] = None,
    queue_delay_us: Annotated[int, typer.Option(help="Dynamic batcher max queue delay in microseconds.", min=0)] = 100,
    onnx_device: Annotated[str, typer.Option(help="Instance kind of ONNX models: cpu or gpu.")] = "cpu",
    onnx_trt_fp16: Annotated[
        bool,
        typer.Option(
            "--onnx-trt-fp16",
            help="fp16 ONNX models: TensorRT accelerator in fp16 (GPU instances); fp32 ONNX refused (TensorRT 11 has no fp16 flag).",
        ),
    ] = False,
    onnx_backend: Annotated[
        str | None,
        typer.Option(
            help="Triton backend of ONNX models: onnxruntime, or openvino (Intel CPUs) [default: openvino for "
            "--target ov-cpu files, onnxruntime otherwise]."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="openvino: inference threads per instance [default: the CPUs this process may use].", min=1),
    ] = None,
    bf16: Annotated[
        bool,
        typer.Option("--bf16", help="openvino: run the fp32 file in bf16 (OpenVINO's hint), as ov-cpu's bf16 rows."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace model folders that already exist.")] = False,
    check_with_triton: Annotated[
        bool,
        typer.Option(
            "--check-with-triton",
            help="Also let PyTriton's bundled tritonserver validate the configs (needs .venv-triton).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Write a Triton model repository: config.pbtxt, version 1 and a README per artifact.

    Triton itself does not run here: the configs are checked with its ModelConfig protobuf and its load-time rules.
    """
    from sbdeploy.serve.triton_repo import TritonOptions, write_triton_repo

    options = TritonOptions(
        max_batch=max_batch,
        instances=instances,
        preferred_batch=tuple(preferred_batch or ()),
        queue_delay_us=queue_delay_us,
        onnx_device=onnx_device,
        onnx_trt_fp16=onnx_trt_fp16,
        onnx_backend=onnx_backend,
        threads=threads,
        bf16=bf16,
    )
    files, names, skipped = [], [], []
    for artifact in artifacts:
        if artifact.is_dir():  # a pipeline run folder: its validated SB artifacts, each named after its file
            from sbdeploy.serve.run_folder import served_artifacts

            served, notes = served_artifacts(artifact)
            files += served.values()
            names += served
            skipped += notes
        else:
            files.append(artifact)
            names.append(artifact.name.split(".")[0])
    repo = write_triton_repo(
        files, out, name=name, names=None if name is not None else names, options=options, force=force
    )
    for note in skipped:
        warn(note, label="note")
    verdicts: dict[str, str | None] = {}
    if check_with_triton:
        from sbdeploy.serve.pytriton_server import check_with_tritonserver

        every = check_with_tritonserver(repo.root)
        verdicts = {m.name: every[m.name] for m in repo.models}
        refused = {n: v for n, v in verdicts.items() if v is not None}
        if refused:
            raise ConfigError(
                f"tritonserver refused the config of {', '.join(f'{n}: {v}' for n, v in refused.items())}"
            )
    if as_json:
        print_json(
            {
                "repository": str(repo.root),
                "validated_with": repo.validated_with,
                "not_validated": repo.not_validated,
                "accepted_by_tritonserver": sorted(verdicts) if check_with_triton else None,
                "models": [
                    {
                        "name": m.name,
                        "platform": m.platform,
                        "folder": str(m.folder),
                        "max_batch_size": m.max_batch_size,
                        "notes": list(m.notes),
                    }
                    for m in repo.models
                ],
            }
        )
        return
    table = Table(title=escape(f"Triton model repository {repo.root}"))
    for column in ("model", "platform", "max_batch_size", "notes"):
        table.add_column(column)
    for m in repo.models:
        table.add_row(escape(m.name), m.platform, str(m.max_batch_size), escape("; ".join(m.notes) or "-"))
    console.print(table)
    if repo.validated_with:
        console.print(f"configs checked against {repo.validated_with}", markup=False, highlight=False)
    else:
        warn(f"configs not checked: {repo.not_validated}")
    if check_with_triton:
        console.print(f"tritonserver (PyTriton's) accepted the configs of {', '.join(sorted(verdicts))}", markup=False)
    console.print(f"serve with: tritonserver --model-repository {repo.root.resolve()}", markup=False, highlight=False)
