"""The zoo table: counted on module skeletons (meta device), equal to sbdeploy.flops on the built networks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from sbdeploy.flops import complexity
from sbdeploy.models import create_model, list_models, model_info
from sbdeploy.zoo import zoo_rows


@pytest.fixture(scope="module")
def rows() -> dict[str, object]:
    return {r.name: r for r in zoo_rows()}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine two threads wait on each other (resnet101: 0.3 s -> 3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.usefixtures("one_thread")
def test_zoo_equals_flops_on_the_built_network(rows: dict[str, object], name: str) -> None:
    info = model_info(name)
    with torch.device("meta"):
        skeleton = create_model(name)
    model = skeleton.to_empty(device="cpu")  # real CPU tensors without the random init (seconds for the large ones)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()  # values do not change the counts; zeros keep uninitialised denormals from slowing the forward
    real = complexity(model, info.input_size)
    row = rows[name]
    assert (row.params, row.macs, row.input_size) == (real.params, real.macs, info.input_size)
    if info.baseline:
        assert row.macs_vs_baseline == pytest.approx(real.macs / rows[info.baseline].macs)


def test_sampling_and_progress() -> None:
    seen: list[tuple[str, int, int]] = []
    rows = zoo_rows(
        "cifar_resnet20*", sampling="three", on_progress=lambda name, done, total: seen.append((name, done, total))
    )
    assert [r.name for r in rows] == ["cifar_resnet20", "cifar_resnet20_sb"]
    assert seen[-1][1:] == (2, 2) and {s[0] for s in seen} == {"cifar_resnet20", "cifar_resnet20_sb"}
    real = complexity(create_model("cifar_resnet20_sb", sampling="three"), (32, 32))
    assert rows[1].macs == real.macs


def test_a_name_without_wildcard_suggests_the_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    from sbdeploy.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["zoo", "resnet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "'resnet*'" in err, err
