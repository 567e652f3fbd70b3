"""The nn tests are float64 checks of many tiny ops: each runs on one torch thread."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    return None
