"""``sbdeploy import``: a state_dict file (safetensors or weights-only .pth) of a zoo architecture -> a checkpoint folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sbdeploy.cli._render import console, print_json, warn
from sbdeploy.cli.train import parse_floats
from sbdeploy.errors import ConfigError

PER_CHANNEL = "numbers, one per channel (e.g. 0.485,0.456,0.406)"


def _class_names(text: str | None) -> list[str] | None:
    """A text file with one name per line, or a comma-separated list."""
    if text is None:
        return None
    path = Path(text)
    if path.is_file():
        try:
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ConfigError(f"--class-names {path} is not a text file (one class name per line)") from None
    return [name.strip() for name in text.split(",")]


def import_weights(
    state_dict: Annotated[
        Path, typer.Argument(help="State_dict file: .safetensors, or .pth/.pt read with torch.load(weights_only=True).")
    ],
    arch: Annotated[str, typer.Option(help="Zoo architecture the weights belong to (see `sbdeploy zoo`).")],
    out: Annotated[Path, typer.Option("--out", help="Checkpoint folder to write (model.safetensors + config.json).")],
    num_classes: Annotated[int | None, typer.Option(min=1, help="Classes (default: read from fc.weight).")] = None,
    in_chans: Annotated[
        int | None, typer.Option(min=1, help="Input channels (default: read from conv1.weight).")
    ] = None,
    input_size: Annotated[
        str | None, typer.Option(help="H or HxW it was trained at (default: 32 CIFAR, 224 ImageNet).")
    ] = None,
    mean: Annotated[
        str | None, typer.Option(help="Per-channel mean, comma-separated (default: ImageNet's for 3 channels).")
    ] = None,
    std: Annotated[
        str | None, typer.Option(help="Per-channel std, comma-separated (default: ImageNet's for 3 channels).")
    ] = None,
    class_names: Annotated[
        str | None, typer.Option(help="A text file with one name per line, or a comma-separated list.")
    ] = None,
    sampling: Annotated[
        str | None, typer.Option(help="Sampling set of an SB architecture (default: chessboard).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a checkpoint already in --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a checkpoint folder from a state_dict of a zoo architecture (strict key and shape checks)."""
    from sbdeploy.cli._options import parse_size
    from sbdeploy.state_dict import import_state_dict

    result = import_state_dict(
        state_dict,
        arch,
        out,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=parse_size(input_size),
        mean=None if mean is None else parse_floats(mean, "--mean", PER_CHANNEL),
        std=None if std is None else parse_floats(std, "--std", PER_CHANNEL),
        class_names=_class_names(class_names),
        sampling=sampling,
        overwrite=overwrite,
    )
    if as_json:
        print_json(result.to_dict())
        return
    config = result.config
    how = ", ".join([result.reader, *(f"unwrapped {u}" for u in result.unwrapped)])
    console.print(
        f"imported {result.source} ({how}) as {config.arch} {config.options}, "
        f"{config.input_size[0]}x{config.input_size[1]} input, {len(config.class_names)} classes",
        markup=False,
        highlight=False,
    )
    for note in result.notes:
        warn(note, label="note")
    console.print(
        f"wrote {result.folder} (model.safetensors sha256 {result.weights_sha256[:16]}...)\n"
        f"next: sbdeploy export {result.folder} -o {result.folder.name}.onnx",
        markup=False,
        highlight=False,
    )
