"""Candidate split points of a model: where an exit can go (a clean cut), what it sees, what it costs (module
named so that it never shadows the standard library `inspect`).

``edge-ee-export inspect MODEL.onnx`` (or ``--model module:factory``) prints them; ``--exits`` of the ``onnx``
command and ``--splits`` / ``--place`` of the recipes pick among them by name, name prefix or MACs fraction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from .attach import trace
from .errors import UsageError


@dataclass(frozen=True)
class CutPoint:
    name: str  # module path (for converted ONNX models: the ONNX node name, "." replaced by "/")
    shape: tuple[int, ...]  # output shape for one sample, batch dimension included
    macs: int  # MACs from the input up to and including this module (one sample)
    fraction: float  # macs / the whole model's MACs

    def row(self) -> str:
        return f"{self.name:<48} {str(list(self.shape)):<20} {self.macs:>14,} {100 * self.fraction:7.2f}%"


def _scope_names(node: fx.Node) -> list[str]:
    """Module paths enclosing ``node``, outermost first (recorded by torch.fx while tracing)."""
    stack = node.meta.get("nn_module_stack") or {}
    names = [v[0] if isinstance(v, tuple) else str(k) for k, v in stack.items()]
    if node.op == "call_module":
        names.append(str(node.target))
    return [n for n in names if n]


_OPS = ("call_module", "call_function", "call_method")


def _macs_and_shapes(model: nn.Module, gm: fx.GraphModule, x: torch.Tensor) -> dict[str, int]:
    """MACs of every conv and linear layer on one sample (as count_macs); the output shapes of ``gm``'s nodes are
    recorded in their ``tensor_meta`` by the same forward pass."""
    from torch.fx.passes.shape_prop import ShapeProp

    macs_of: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(m: nn.Module, inp: Any, out: torch.Tensor) -> None:
            k = math.prod(m.kernel_size) * (m.in_channels // m.groups) if isinstance(m, nn.Conv1d | nn.Conv2d) \
                else m.in_features
            macs_of[name] = macs_of.get(name, 0) + int(out[0].numel()) * int(k)
        return record

    hooks = [mod.register_forward_hook(hook(name)) for name, mod in model.named_modules()
             if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(x)
    finally:
        for h in hooks:
            h.remove()
    return macs_of


class _Graph:
    """Positions and last uses of a traced graph's nodes."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.nodes = list(gm.graph.nodes)
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        self.last_use = {n: max((self.pos[u] for u in n.users), default=self.pos[n]) for n in self.nodes}
        self.ops = [n for n in self.nodes if n.op in _OPS]
        self.final_pos = self.pos[self.ops[-1]] if self.ops else 0

    def cut_name(self, n: fx.Node) -> str | None:
        """The outermost module that ends at ``n`` (no later operation inside it) and is called once, if any."""
        later = [m for m in self.nodes[self.pos[n] + 1:] if m.op in _OPS]
        name = next((s for s in _scope_names(n) if not any(s in _scope_names(m) for m in later[:50])), None)
        if name is None or sum(1 for m in self.ops if m.op == "call_module" and m.target == name) > 1:
            return None
        return name


def cut_points(model: nn.Module, example: torch.Tensor) -> list[CutPoint]:
    """Every place the model can be cut cleanly (only one value is passed on) leaving a non-empty remainder, in
    execution order, named by the outermost module that ends there. Of consecutive cuts that cost no MACs in
    between and keep the shape (conv, BN, ReLU), only the last is listed. One trace, one forward pass."""
    model.eval()
    gm = fx.GraphModule(model, trace(model, set()))
    macs_of = _macs_and_shapes(model, gm, example[:1])
    g = _Graph(gm)
    total = max(sum(macs_of.values()), 1)
    found: list[CutPoint] = []
    reach = -1  # the furthest use of any value computed before the current node
    cum = 0
    for n in g.nodes:
        if n.op == "call_module":
            sub = str(n.target)
            cum += sum(v for k, v in macs_of.items() if k == sub or k.startswith(sub + "."))
        tm = n.meta.get("tensor_meta")
        clean = reach <= g.pos[n] and n.op in _OPS and g.pos[n] < g.final_pos
        name = g.cut_name(n) if clean and tm is not None and hasattr(tm, "shape") else None
        if name is not None:
            cp = CutPoint(name, tuple(tm.shape), cum, cum / total)
            if found and found[-1].macs == cp.macs and found[-1].shape == cp.shape:
                found[-1] = cp
            else:
                found.append(cp)
        if n.op != "get_attr":
            reach = max(reach, g.last_use[n])
    return found


def default_final_split(cands: Sequence[CutPoint]) -> str:
    """The last cut that still gives a feature map ([N, C, H, W]): what follows is the model's classifier."""
    maps = [c for c in cands if len(c.shape) == 4]
    if not cands:
        raise UsageError("the model has no clean cut point", "a chain of layers is needed to attach exits")
    return (maps or list(cands))[-1].name


def _as_fraction(text: str) -> float | None:
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        return None
    return v if 0 < v < 1 else None


def resolve_exits(cands: Sequence[CutPoint], specs: Sequence[str], final_split: str) -> list[str]:
    """Turn ``--exits`` items into cut names: an exact cut name, a name prefix (the last cut inside that
    module, e.g. ``layer2``), or a MACs fraction (``0.3`` / ``30%``: the nearest cut)."""
    names = [c.name for c in cands]
    if final_split not in names:
        raise UsageError(f"final split {final_split!r} is not a clean cut point of the model",
                         "list the cut points with `edge-ee-export inspect`")
    usable = cands[: names.index(final_split)]
    if not usable:
        raise UsageError(f"no cut point lies before the final split {final_split!r}")
    chosen: list[str] = []
    for s in specs:
        f = _as_fraction(s)
        if f is not None:
            hit = min(usable, key=lambda c: abs(c.fraction - f)).name
        elif s in names:
            hit = s
        else:
            pre = [c.name for c in usable if c.name.startswith(s.rstrip("/.") + "/")
                   or c.name.startswith(s.rstrip("/.") + ".")]
            if not pre:
                close = [n for n in names if s.lower() in n.lower()][:6]
                raise UsageError(f"exit {s!r} is not a cut point, a module containing one, or a MACs fraction",
                                 "list the cut points with `edge-ee-export inspect`"
                                 + (f"; similar: {', '.join(close)}" if close else ""))
            hit = pre[-1]
        if hit not in [c.name for c in usable]:
            raise UsageError(f"exit {s!r} ({hit}) does not lie before the final split {final_split!r}")
        if hit not in chosen:
            chosen.append(hit)
    order = {n: i for i, n in enumerate(names)}
    return sorted(chosen, key=lambda n: order[n])


def format_table(cands: Sequence[CutPoint], final_split: str | None = None) -> str:
    head = f"{'cut point (--exits NAME)':<48} {'output shape':<20} {'MACs up to here':>14} {'of all':>8}"
    rows = [c.row() + ("   <- default final split" if c.name == final_split else "") for c in cands]
    return "\n".join([head, *rows])
