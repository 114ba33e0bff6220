"""Attach early exits to any ``nn.Module`` without changing its weights.

The model is traced with ``torch.fx`` (split-point modules are kept as leaves) and cut after each
named module into *segments*; every cut must be clean (only the split module's output crosses it,
no skip connection around it). Exit heads are attached to the segment outputs. The last segment
ends at ``final_split``; what follows (pooling + classifier) becomes the final head. Segments share
parameters with the original model (nothing is copied), so a frozen backbone stays the user's.

Exit-head families (all cheap: they pool the feature map before convolving):

* ``pool_linear`` (SDN / BranchyNet): average pooling to ``pool`` x ``pool`` + linear;
* ``dws`` (T-RecX): pooling, depthwise 3x3 + pointwise 1x1 (BN, ReLU), global pool, linear;
* ``conv`` (PTEENet / EENets branch): pooling, 3x3 conv block, global pool, linear;
* ``conv_conf`` / ``dws_conf`` / ``pool_linear_conf``: the same plus a learned sigmoid confidence
  output (EENets / PTEENet), exported as a second head output named ``confidence``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from .errors import UsageError

log = logging.getLogger("edge_ee_export")

HEAD_FAMILIES = ("pool_linear", "dws", "conv", "pool_linear_conf", "dws_conf", "conv_conf")


# --------------------------------------------------------------------------- MACs


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass for one sample (conv and linear layers; batch 1)."""
    total = 0

    def conv_hook(m: nn.Conv2d | nn.Conv1d, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        k = math.prod(m.kernel_size)
        total += int(out[0].numel()) * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Linear, inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += int(out[0].numel()) * m.in_features

    hooks = []
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(*[i[:1] for i in inputs])
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return total


# --------------------------------------------------------------------------- splitting


# Modules of converted ONNX graphs (onnx2torch) stay whole when traced: each is one ONNX operator, and their
# forward may branch on shapes, which torch.fx cannot trace through.
LEAF_MODULE_PACKAGES = ("onnx2torch.",)


class _Tracer(fx.Tracer):
    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (qualname in self.leaves or type(m).__module__.startswith(LEAF_MODULE_PACKAGES)
                or super().is_leaf_module(m, qualname))


def module_paths(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def _suggest(model: nn.Module, path: str) -> str:
    names = module_paths(model)
    top = [n for n in names if "." not in n]
    close = [n for n in names if path.split(".")[-1] in n][:8]
    s = f"top-level modules: {', '.join(top[:20])}"
    if close:
        s += f"; similar paths: {', '.join(close)}"
    return s


def trace(model: nn.Module, leaves: set[str]) -> fx.Graph:
    """``model``'s torch.fx graph with the modules in ``leaves`` kept as single calls."""
    try:
        return _Tracer(leaves).trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many types
        raise UsageError(
            f"cannot trace {type(model).__name__} with torch.fx: {str(e).splitlines()[0][:200]}",
            "the model's forward must be traceable (no data-dependent Python control flow)",
        ) from e


def _io_nodes(nodes: list[fx.Node]) -> tuple[fx.Node, fx.Node]:
    """The single input and the output node; a model with several inputs or outputs cannot be split."""
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UsageError(f"the model takes {len(placeholders)} inputs; only single-input models can be split")
    out_node = next(n for n in nodes if n.op == "output")
    if not isinstance(out_node.args[0], fx.Node):
        raise UsageError(
            "the model's output is not a single logits tensor (it returns a tuple, list or dict)",
            "wrap the model so that forward returns logits [N, classes]",
        )
    return placeholders[0], out_node


def _cut_nodes(model: nn.Module, nodes: list[fx.Node], pos: dict[fx.Node, int], cuts: Sequence[str]
               ) -> list[fx.Node]:
    """The one call of each cut module, checked to come in execution order."""
    cut_nodes: list[fx.Node] = []
    for c in cuts:
        hits = [n for n in nodes if n.op == "call_module" and n.target == c]
        if not hits:
            raise UsageError(f"split point {c!r} is never called in forward()", _suggest(model, c))
        if len(hits) > 1:
            raise UsageError(f"split point {c!r} is called {len(hits)} times in forward(); it cannot be a cut")
        cut_nodes.append(hits[0])
    order = sorted(range(len(cuts)), key=lambda i: pos[cut_nodes[i]])
    if order != list(range(len(cuts))):
        raise UsageError(f"split points must be given in execution order: {[cuts[i] for i in order]}")
    return cut_nodes


def _check_clean(cut: str, cn: fx.Node, nodes: list[fx.Node], pos: dict[fx.Node, int]) -> None:
    """A cut is clean when no value computed before it (other than the cut itself) is used after it."""
    p = pos[cn]
    for n in nodes[p + 1:]:
        for a in n.all_input_nodes:
            if pos[a] < p and a.op != "get_attr" or (pos[a] == p and a is not cn):
                what = "the model input" if a.op == "placeholder" else f"value {a.name!r}"
                raise UsageError(
                    f"split point {cut!r} is not a clean cut: {what}, computed before it, is used after it "
                    f"by {n.name!r} (a skip connection or a second branch crosses the cut)",
                    "choose a module whose output is the only thing passed on, e.g. a whole residual stage",
                )


def _piece(model: nn.Module, nodes: list[fx.Node], pos: dict[fx.Node, int], start: fx.Node, end: fx.Node | None,
           out_node: fx.Node, k: int) -> fx.GraphModule:
    """The graph from ``start``'s output to ``end`` (``None``: to the model's output) as one module."""
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: g.placeholder("x")}

    def arg(a: fx.Node) -> fx.Node:
        if a not in env:
            if a.op == "get_attr":
                env[a] = g.get_attr(a.target)  # type: ignore[arg-type]
            else:  # pragma: no cover - excluded by the clean-cut check
                raise UsageError(f"internal: value {a.name} crosses a cut")
        return env[a]

    stop = pos[end] if end is not None else pos[out_node] - 1
    for n in nodes[pos[start] + 1: stop + 1]:
        if n.op == "get_attr":
            continue
        env[n] = g.node_copy(n, arg)
    result = env[end] if end is not None else arg(out_node.args[0])  # type: ignore[arg-type]
    g.output(result)
    g.lint()
    return fx.GraphModule(model, g, class_name=f"Segment{k}")


def split_model(model: nn.Module, cuts: Sequence[str]) -> list[fx.GraphModule]:
    """Cut ``model`` after each module path in ``cuts`` (in execution order).

    Returns ``len(cuts) + 1`` graph modules: piece 0 takes the model input, piece k takes the
    output of cut k-1; the last piece ends with the model's output.
    """
    known = set(module_paths(model))
    for c in cuts:
        if c not in known:
            raise UsageError(f"split point {c!r} is not a module of {type(model).__name__}",
                             _suggest(model, c))
    if len(set(cuts)) != len(cuts):
        raise UsageError(f"split points repeat: {list(cuts)}")
    graph = trace(model, set(cuts))
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    start, out_node = _io_nodes(nodes)
    cut_nodes = _cut_nodes(model, nodes, pos, cuts)
    for c, cn in zip(cuts, cut_nodes):
        _check_clean(c, cn, nodes, pos)
    bounds: list[fx.Node] = [start, *cut_nodes]
    return [_piece(model, nodes, pos, bounds[k], bounds[k + 1] if k + 1 < len(bounds) else None, out_node, k)
            for k in range(len(bounds))]


# --------------------------------------------------------------------------- heads


def _pool_to(shape: torch.Size, max_spatial: int) -> nn.Module:
    """Average pooling that brings H, W down to at most ``max_spatial`` (fixed kernel; ONNX friendly)."""
    h, w = int(shape[-2]), int(shape[-1])
    kh, kw = max(1, math.ceil(h / max_spatial)), max(1, math.ceil(w / max_spatial))
    if kh == 1 and kw == 1:
        return nn.Identity()
    return nn.AvgPool2d((kh, kw), stride=(kh, kw), ceil_mode=False)


class GlobalPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x.mean(dim=(2, 3))
        if x.dim() == 3:
            return x.mean(dim=1)
        return x


class ExitHead(nn.Module):
    """``body`` (feature -> pooled vector) + linear classifier (+ optional sigmoid confidence)."""

    def __init__(self, body: nn.Module, dim: int, num_classes: int, confidence: bool, family: str) -> None:
        super().__init__()
        self.body = body
        self.fc = nn.Linear(dim, num_classes)
        self.conf = nn.Linear(dim, 1) if confidence else None
        self.family = family

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        z = self.body(x)
        logits = self.fc(z)
        if self.conf is None:
            return logits
        return logits, torch.sigmoid(self.conf(z))


def make_head(family: str, feat_shape: torch.Size, num_classes: int, width: int | None = None,
              max_spatial: int = 7, pool: int = 2) -> ExitHead:
    """Build an exit head for features of shape ``[N, C, H, W]`` (or ``[N, D]`` / ``[N, T, D]``)."""
    if family not in HEAD_FAMILIES:
        raise UsageError(f"unknown exit head family {family!r}; choose one of {', '.join(HEAD_FAMILIES)}")
    conf = family.endswith("_conf")
    base = family.removesuffix("_conf")
    if len(feat_shape) != 4:
        if base != "pool_linear":
            raise UsageError(f"head family {family!r} needs a [N, C, H, W] feature map; the split point gives "
                             f"{list(feat_shape)}", "use --head pool_linear for vector or sequence features")
        return ExitHead(GlobalPool(), int(feat_shape[-1]), num_classes, conf, family)
    c = int(feat_shape[1])
    if base == "pool_linear":
        pooler = _pool_to(feat_shape, pool)
        with torch.no_grad():
            d = int(pooler(torch.zeros(1, *feat_shape[1:])).numel())
        return ExitHead(nn.Sequential(pooler, nn.Flatten(1)), d, num_classes, conf, family)
    w = width or max(16, min(2 * c, 64))
    pooler = _pool_to(feat_shape, max_spatial)
    if base == "dws":
        body = nn.Sequential(
            pooler,
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            GlobalPool(),
        )
    else:
        body = nn.Sequential(
            pooler,
            nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            GlobalPool(),
        )
    return ExitHead(body, w, num_classes, conf, family)


class EarlyViewHead(nn.Module):
    """T-RecX "early view": the final classifier also sees a depthwise-conv view of the final
    features (a copy of the exit's depthwise conv when channels match), concatenated to the
    pooled features. Initialised so that it reproduces the original final classifier."""

    def __init__(self, fc: nn.Linear, channels: int, dw: nn.Conv2d | None) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        if dw is not None and dw.weight.shape == self.dw.weight.shape:
            with torch.no_grad():
                self.dw.weight.copy_(dw.weight)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(fc.in_features + channels, fc.out_features)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[:, : fc.in_features].copy_(fc.weight)
            self.fc.bias.copy_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.mean(dim=(2, 3))
        b = torch.relu(self.bn(self.dw(x))).mean(dim=(2, 3))
        return self.fc(torch.cat([a, b], dim=1))


# --------------------------------------------------------------------------- model


@dataclass
class ExitInfo:
    split: str
    family: str
    segment_macs: int
    head_macs: int
    feat_shape: list[int]


@dataclass
class EEMeta:
    splits: list[str]
    final_split: str | None
    num_classes: int
    input_shape: list[int]
    exits: list[ExitInfo] = field(default_factory=list)
    final_segment_macs: int = 0
    final_head_macs: int = 0
    full_macs: int = 0
    early_view: bool = False


class EarlyExitModel(nn.Module):
    """Segments of a backbone plus exit heads. ``forward`` returns one entry per exit (early exits
    first, final last); each entry is ``(logits, confidence or None)``."""

    def __init__(self, segments: list[nn.Module], heads: list[ExitHead], final_head: nn.Module | None,
                 meta: EEMeta) -> None:
        super().__init__()
        self.segments = nn.ModuleList(segments)
        self.heads = nn.ModuleList(heads)
        self.final_head = final_head
        self.meta = meta

    @property
    def num_early(self) -> int:
        return len(self.heads)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for seg in self.segments:
            x = seg(x)
            feats.append(x)
        return feats

    def head_outputs(self, feats: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        outs: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for h, f in zip(self.heads, feats):
            o = h(f)
            outs.append((o[0], o[1]) if isinstance(o, tuple) else (o, None))
        last = feats[-1] if self.final_head is None else self.final_head(feats[-1])
        outs.append((last, None))
        return outs

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return self.head_outputs(self.features(x))

    def backbone_parameters(self) -> list[nn.Parameter]:
        seen = {id(p) for h in self.heads for p in h.parameters()}
        out = []
        for m in list(self.segments) + ([self.final_head] if self.final_head is not None else []):
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for h in self.heads for p in h.parameters()]

    def cost_table(self) -> dict[str, Any]:
        m = self.meta
        seg = [e.segment_macs for e in m.exits] + [m.final_segment_macs]
        heads = [e.head_macs for e in m.exits] + [m.final_head_macs]
        return {"segment_macs": seg, "head_macs": heads, "full_macs": m.full_macs}

    def enable_early_view(self) -> None:
        """Replace a pool+linear final classifier by the T-RecX early-view classifier."""
        if self.meta.early_view:
            return
        if self.final_head is None:
            raise UsageError("early view needs a final classifier after final_split")
        linears = [m for m in self.final_head.modules() if isinstance(m, nn.Linear)]
        convs = [m for m in self.final_head.modules() if isinstance(m, nn.Conv2d)]
        if len(linears) != 1 or convs:
            raise UsageError("early view needs a final classifier of the form global-average-pool + linear")
        dws = [mm for h in self.heads for mm in h.modules()
               if isinstance(mm, nn.Conv2d) and mm.groups > 1 and mm.groups == mm.in_channels]
        ch = linears[0].in_features
        ev = EarlyViewHead(linears[0], ch, dws[-1] if dws else None)
        # check that it reproduces the original classifier before swapping it in
        x = torch.randn(4, ch, 4, 4)
        self.final_head.eval()
        ev.eval()
        with torch.no_grad():
            if not torch.allclose(self.final_head(x), ev(x), atol=1e-4):
                raise UsageError("early view needs a final classifier of the form global-average-pool + linear")
        self.final_head = ev
        self.meta.early_view = True
        self.meta.final_head_macs = count_macs(ev, x)
        self.meta.full_macs = sum(e.segment_macs for e in self.meta.exits) + self.meta.final_segment_macs \
            + self.meta.final_head_macs


def _is_logits(out: Any, num_classes: int | None) -> int:
    if not isinstance(out, torch.Tensor):
        raise UsageError(
            f"the model's output is a {type(out).__name__}, not a logits tensor",
            "wrap the model so that forward returns logits [N, classes]",
        )
    if out.dim() != 2:
        raise UsageError(
            f"the model's output has shape {list(out.shape)}; logits must be [N, classes]",
            "cut off any spatial output or wrap the model so forward returns class scores",
        )
    if num_classes is not None and out.shape[1] != num_classes:
        raise UsageError(f"the model outputs {out.shape[1]} scores but the dataset has {num_classes} classes")
    if torch.all((out >= 0) & (out <= 1)) and torch.allclose(out.sum(1), torch.ones(out.shape[0]), atol=1e-3):
        raise UsageError(
            "the model's output looks like probabilities (rows sum to 1), not logits",
            "remove the final softmax: exits and temperatures need raw logits",
        )
    return int(out.shape[1])


def attach_exits(model: nn.Module, splits: Sequence[str], example_input: torch.Tensor,
                 final_split: str | None = None, head: str | Sequence[str] = "conv_conf",
                 num_classes: int | None = None, head_width: int | None = None, max_spatial: int = 7,
                 warn_fraction: float = 0.5) -> EarlyExitModel:
    """Cut ``model`` after each module path in ``splits`` and attach one exit head per cut.

    ``final_split`` (optional) cuts once more: what follows becomes the final head (typically
    pooling + classifier). A head costing more than ``warn_fraction`` of the segment before it
    triggers a warning.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"attach_exits needs a torch.nn.Module, got {type(model).__name__}",
                         "for an ONNX model: edge_ee_export.onnx_import.load_onnx(PATH).module (or the CLI "
                         "`edge-ee-export onnx PATH`)")
    if not splits:
        raise UsageError("give at least one split point for an early exit")
    model.eval()
    with torch.no_grad():
        out = model(example_input[:2])
    num_classes = _is_logits(out, num_classes)
    cuts = list(splits) + ([final_split] if final_split else [])
    pieces = split_model(model, cuts)
    segments = pieces[: len(splits) + 1]
    final_head = pieces[-1] if final_split else None
    families = [head] * len(splits) if isinstance(head, str) else list(head)
    if len(families) != len(splits):
        raise UsageError(f"{len(families)} head families for {len(splits)} split points")
    heads: list[ExitHead] = []
    exits: list[ExitInfo] = []
    x = example_input[:1]
    with torch.no_grad():
        for k, seg in enumerate(segments):
            seg_macs = count_macs(seg, x)
            y = seg(x)
            if k < len(splits):
                if not isinstance(y, torch.Tensor):
                    raise UsageError(f"split point {splits[k]!r} outputs a {type(y).__name__}, not a tensor")
                h = make_head(families[k], y.shape, num_classes, head_width, max_spatial)
                hm = count_macs(h, y)
                heads.append(h)
                exits.append(ExitInfo(splits[k], families[k], seg_macs, hm, list(y.shape)))
            else:
                final_seg_macs = seg_macs
            x = y
        final_head_macs = count_macs(final_head, x) if final_head is not None else 0
        check = final_head(x) if final_head is not None else x
        _is_logits(torch.cat([check, check]), num_classes) if check.dim() == 2 else _is_logits(check, num_classes)
    full = sum(e.segment_macs for e in exits) + final_seg_macs + final_head_macs
    for e in exits:
        if e.head_macs > warn_fraction * max(e.segment_macs, 1):
            warnings.warn(
                f"exit head after {e.split!r} ({e.family}) costs {e.head_macs:,} MACs = "
                f"{e.head_macs / max(e.segment_macs, 1):.0%} of the segment before it "
                f"({e.head_macs / full:.1%} of the full model)",
                stacklevel=2,
            )
    meta = EEMeta(list(splits), final_split, num_classes, list(example_input.shape[1:]), exits,
                  final_seg_macs, final_head_macs, full)
    return EarlyExitModel(segments, heads, final_head, meta)


def place_splits(model: nn.Module, example_input: torch.Tensor, fractions: Sequence[float],
                 candidates: Sequence[str] | None = None) -> list[str]:
    """Choose split points whose cumulative MACs are closest to ``fractions`` of the model's MACs.

    Candidates default to the top-level child modules that make clean cuts.
    """
    model.eval()
    names = list(candidates) if candidates is not None else [n for n, _ in model.named_children()]
    total = count_macs(model, example_input)
    cum: list[tuple[str, float]] = []
    for n in names:
        try:
            pieces = split_model(model, [n])
        except UsageError:
            continue
        cum.append((n, count_macs(pieces[0], example_input) / max(total, 1)))
    if not cum:
        raise UsageError("no candidate module makes a clean cut")
    chosen: list[str] = []
    for f in fractions:
        best = min(cum, key=lambda t: abs(t[1] - f))
        if best[0] not in chosen:
            chosen.append(best[0])
    order = {n: i for i, (n, _) in enumerate(cum)}
    return sorted(chosen, key=lambda n: order[n])
