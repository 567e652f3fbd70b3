"""What every graph pass shares: the :class:`PassReport`, the op census it is built from, stale shape entries dropped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import onnx


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor, by tensor name."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each op type the main graph holds, sorted by op type."""
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


@dataclass(frozen=True)
class PassReport:
    """One pass's effect on the graph: the op census before and after."""

    name: str
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def nodes_before(self) -> int:
        return sum(self.ops_before.values())

    @property
    def nodes_after(self) -> int:
        return sum(self.ops_after.values())

    def changed_ops(self) -> dict[str, tuple[int, int]]:
        """Op types whose count changed: ``{op: (before, after)}``."""
        ops = sorted(set(self.ops_before) | set(self.ops_after))
        return {
            op: (self.ops_before.get(op, 0), self.ops_after.get(op, 0))
            for op in ops
            if self.ops_before.get(op, 0) != self.ops_after.get(op, 0)
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "ops_before": self.ops_before,
            "ops_after": self.ops_after,
            "notes": list(self.notes),
        }


def drop_stale_value_info(model: onnx.ModelProto) -> int:
    """Remove, in place, the ``value_info`` entries of tensors that no node produces or reads (graph inputs, outputs
    and initializers keep theirs); return how many."""
    graph = model.graph
    live = {v.name for v in (*graph.input, *graph.output)} | {t.name for t in graph.initializer}
    live |= {name for node in graph.node for name in (*node.input, *node.output)}
    kept = [v for v in graph.value_info if v.name in live]
    dropped = len(graph.value_info) - len(kept)
    if dropped:
        del graph.value_info[:]
        graph.value_info.extend(kept)
    return dropped
