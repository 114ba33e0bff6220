"""Training: the backbone (built-in models), then the exits.

Exit training methods:

* ``pteenet`` (default) / ``sdn``: the backbone is frozen (its weights never change); only the
  heads learn. Heads with a confidence output are trained with the EENets cost-aware loss on top
  of each head's cross-entropy (PTEENet), plus a binary cross-entropy that teaches the confidence
  whether its exit's prediction is right (without it the cost-aware loss alone lets the
  confidence collapse towards "always defer" when the final exit is much more accurate).
* ``eenet``: joint fine-tuning of backbone and heads with the EENets cost-aware loss
  ``L = CE(y'_0) + lambda * cost'_0`` (``y'_k = c_k y_k + (1 - c_k) y'_{k+1}``, same for cost) plus
  per-exit cross-entropy.
* ``trecx``: joint fine-tuning with ``L = w * sum_k CE(early_k) + CE(final)`` and the "early view"
  final classifier (fights overthinking).

Every run is seeded, shows tqdm progress (unless ``progress=False``), and can resume from a
checkpoint written after every epoch (atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .attach import EarlyExitModel
from .data import Dataset, TensorSplit
from .errors import UsageError

log = logging.getLogger("edge_ee_export")
METHODS = ("pteenet", "sdn", "eenet", "trecx")
JOINT = ("eenet", "trecx")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def augment(x: torch.Tensor, kind: str | None, g: torch.Generator) -> torch.Tensor:
    """``shift_flip``: random shift of up to 2 pixels and horizontal flip (images);
    ``time_mask``: one random time and one feature mask (features); ``None``: nothing."""
    if kind is None:
        return x
    if kind == "shift_flip":
        b, c, h, w = x.shape
        p = 2
        xp = F.pad(x, (p, p, p, p), value=float(x.min()))
        dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, c, h, w)
        xr = torch.gather(xp, 2, (dy[:, None, None, None] + torch.arange(h)[None, None, :, None])
                          .expand(b, c, h, w + 2 * p))
        xc = torch.gather(xr, 3, cols)
        flip = torch.rand(b, generator=g) < 0.5
        xc[flip] = xc[flip].flip(-1)
        return xc
    if kind == "time_mask":
        x = x.clone()
        b, _, t, f = x.shape
        for i in range(b):
            t0 = int(torch.randint(0, t, (1,), generator=g))
            x[i, :, t0: t0 + int(torch.randint(0, 6, (1,), generator=g))] = 0
            f0 = int(torch.randint(0, f, (1,), generator=g))
            x[i, :, :, f0: f0 + int(torch.randint(0, 2, (1,), generator=g))] = 0
        return x
    raise UsageError(f"unknown augmentation {kind!r}")


def batches(split: TensorSplit, batch: int, shuffle: bool, g: torch.Generator | None = None):
    n = len(split)
    idx = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    for i in range(0, n, batch):
        j = idx[i: i + batch]
        yield split.x[j], split.y[j]


@torch.no_grad()
def evaluate(model: nn.Module, split: TensorSplit, batch: int = 512) -> float:
    model.eval()
    correct = 0
    for x, y in batches(split, batch, False):
        out = model(x)
        if isinstance(out, list):
            out = out[-1][0]
        correct += int((out.argmax(1) == y).sum())
    return correct / max(len(split), 1)


@torch.no_grad()
def evaluate_exits(ee: EarlyExitModel, split: TensorSplit, batch: int = 512) -> list[float]:
    ee.eval()
    correct = np.zeros(ee.num_early + 1)
    for x, y in batches(split, batch, False):
        for k, (lg, _c) in enumerate(ee(x)):
            correct[k] += int((lg.argmax(1) == y).sum())
    return (correct / max(len(split), 1)).tolist()


def _rng_state() -> dict[str, Any]:
    """The global generators' states (torch, numpy, random), so that a resumed run equals an uninterrupted one."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["random"])


def _fingerprint(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_ckpt(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_ckpt(path: Path | None, fp: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        log.warning("ignoring unreadable checkpoint %s (%s)", path, e)
        return None
    if state.get("fingerprint") != fp:
        log.warning("checkpoint %s belongs to another configuration; starting over", path)
        return None
    return state


@dataclass
class _Loop:
    """One training loop: what is optimised and how, and where it is checkpointed (under which fingerprint)."""

    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    ckpt: Path | None
    fp: str


def _run_epochs(loop: _Loop, epochs: int, data: Dataset, step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                batch: int, seed: int, progress: bool, on_epoch: Callable[[int], dict[str, float]],
                train_mode: Callable[[], None]) -> list[dict[str, float]]:
    name, params_model, opt, sched, ckpt, fp = loop.name, loop.model, loop.opt, loop.sched, loop.ckpt, loop.fp
    start, history = 0, []
    state = _load_ckpt(ckpt, fp)
    if state is not None:
        params_model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = state["epoch"], state["history"]
        if "rng" in state:  # dropout draws from the global generators: a resumed run must continue their streams
            _set_rng_state(state["rng"])
        log.info("%s: resumed from %s at epoch %d/%d", name, ckpt, start, epochs)
    for ep in range(start, epochs):
        g = torch.Generator().manual_seed(seed * 1000 + ep)
        split = data.train
        if data.train_fn is not None:
            split = data.train_fn(seed * 1000 + ep)
        train_mode()
        t0 = time.time()
        tot, n = 0.0, 0
        it = batches(split, batch, True, g)
        bar = tqdm(it, total=(len(split) + batch - 1) // batch, desc=f"{name} {ep + 1}/{epochs}",
                   disable=not progress, leave=False, mininterval=2.0)
        for x, y in bar:
            x = augment(x, data.augment, g)
            loss = step(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(y)
            n += len(y)
            bar.set_postfix(loss=f"{tot / n:.4f}", refresh=False)
        rec = {"epoch": ep + 1, "loss": tot / max(n, 1), "seconds": time.time() - t0, **on_epoch(ep)}
        history.append(rec)
        log.info("%s epoch %d/%d %s", name, ep + 1, epochs,
                 " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        if ckpt is not None:
            _save_ckpt(ckpt, {"fingerprint": fp, "epoch": ep + 1, "history": history,
                              "model": params_model.state_dict(), "opt": opt.state_dict(),
                              "sched": sched.state_dict(), "rng": _rng_state()})
    return history


def train_backbone(model: nn.Module, data: Dataset, epochs: int = 20, lr: float = 0.1, batch: int = 128,
                   weight_decay: float = 5e-4, seed: int = 0, ckpt: Path | None = None,
                   progress: bool = True) -> list[dict[str, float]]:
    """Train a built-in backbone with cross-entropy (SGD, Nesterov momentum, one-cycle LR)."""
    set_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps = max(1, epochs * ((len(data.train) + batch - 1) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    fp = _fingerprint({"kind": "backbone", "arch": type(model).__name__, "epochs": epochs, "lr": lr,
                       "batch": batch, "wd": weight_decay, "seed": seed, "n": len(data.train),
                       "sizes": data.sizes()})

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y, label_smoothing=0.05)

    return _run_epochs(_Loop("backbone", model, opt, sched, ckpt, fp), epochs, data, step, batch, seed, progress,
                       lambda ep: {"val_acc": evaluate(model, data.calib_temp)}, lambda: model.train())


def eenet_loss(outs: list[tuple[torch.Tensor, torch.Tensor | None]], y: torch.Tensor, costs: list[float],
               lam: float) -> torch.Tensor:
    """EENets cost-aware loss over exits that have a confidence output (final: confidence 1)."""
    probs = [F.softmax(lg, 1) for lg, _ in outs]
    mix = probs[-1]
    cost = torch.full_like(y, costs[-1], dtype=probs[-1].dtype)
    for k in range(len(outs) - 2, -1, -1):
        c = outs[k][1]
        if c is None:
            continue
        c = c.reshape(-1)
        mix = c[:, None] * probs[k] + (1 - c[:, None]) * mix
        cost = c * costs[k] + (1 - c) * cost
    return F.nll_loss(torch.log(mix.clamp_min(1e-8)), y) + lam * cost.mean()


@dataclass(frozen=True)
class ExitTraining:
    """The knobs of :func:`train_exits`: ``lr`` of a jointly fine-tuned backbone (default 0.01; frozen: the
    heads' rate), ``head_lr`` of the heads (default 0.05), batch size, EENets cost weight ``lam``, T-RecX weight of
    the early exits' loss, T-RecX early view (default on for trecx)."""

    lr: float | None = None
    batch: int = 128
    lam: float = 0.05
    early_weight: float = 0.4
    early_view: bool | None = None
    head_lr: float | None = None


def train_exits(ee: EarlyExitModel, data: Dataset, method: str = "pteenet", epochs: int = 10, seed: int = 0,
                ckpt: Path | None = None, progress: bool = True, **options: Any) -> list[dict[str, float]]:
    """Train the exit heads (frozen backbone) or the whole model (joint methods); see module doc. ``options``:
    the fields of :class:`ExitTraining` (``lr``, ``batch``, ``lam``, ``early_weight``, ``early_view``,
    ``head_lr``)."""
    if method not in METHODS:
        raise UsageError(f"unknown training method {method!r}; choose one of {', '.join(METHODS)}")
    try:
        o = ExitTraining(**options)
    except TypeError as e:
        raise UsageError(f"train_exits: {e}") from None
    lr, batch, lam, early_weight, early_view, head_lr = o.lr, o.batch, o.lam, o.early_weight, o.early_view, o.head_lr
    set_seed(seed)
    joint = method in JOINT
    if method == "trecx" and (early_view is None or early_view):
        ee.enable_early_view()
    bb = ee.backbone_parameters()
    for p in bb:
        p.requires_grad_(joint)
    # fresh heads learn at head_lr; a jointly fine-tuned backbone moves more gently (lr)
    head_lr = head_lr if head_lr is not None else 0.05
    lr = lr if lr is not None else (0.01 if joint else head_lr)
    groups = [{"params": list(ee.head_parameters()), "lr": head_lr}]
    if joint:
        groups.append({"params": bb, "lr": lr})
    opt = torch.optim.SGD(groups, lr=head_lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    steps = max(1, epochs * ((len(data.train) + batch - 1) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                pct_start=0.1)
    ct = ee.cost_table()
    cum, tot = [], 0
    for s, h in zip(ct["segment_macs"], ct["head_macs"]):
        tot += s + h
        cum.append(tot / ct["full_macs"])
    h = hashlib.sha256()
    for p in bb:
        h.update(p.detach().numpy().tobytes())
    fp = _fingerprint({"kind": "exits", "loss": "ce+eenet+bce", "backbone": h.hexdigest()[:16], "method": method,
                       "epochs": epochs, "lr": lr, "head_lr": head_lr, "batch": batch,
                       "seed": seed, "lam": lam, "w": early_weight, "splits": ee.meta.splits,
                       "heads": [e.family for e in ee.meta.exits], "n": len(data.train), "ev": ee.meta.early_view})

    def train_mode() -> None:
        ee.train()
        if not joint:  # frozen backbone: BN statistics stay the model's own
            for s in ee.segments:
                s.eval()
            if ee.final_head is not None:
                ee.final_head.eval()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if joint:
            outs = ee(x)
        else:
            with torch.no_grad():
                feats = ee.features(x)
            outs = ee.head_outputs(feats)
        ce = [F.cross_entropy(lg, y) for lg, _ in outs]
        has_conf = any(c is not None for _, c in outs[:-1])
        if method == "trecx":
            return early_weight * sum(ce[:-1]) + ce[-1]
        loss = sum(ce[:-1]) + (ce[-1] if joint else 0.0)
        if has_conf:
            loss = loss + eenet_loss(outs, y, cum, lam)
            # the confidence also learns whether its exit is right (keeps it an informative exit score)
            for lg, c in outs[:-1]:
                if c is not None:
                    target = (lg.detach().argmax(1) == y).float()
                    loss = loss + F.binary_cross_entropy(c.reshape(-1).clamp(1e-6, 1 - 1e-6), target)
        return loss  # type: ignore[return-value]

    def on_epoch(ep: int) -> dict[str, float]:
        accs = evaluate_exits(ee, data.calib_temp)
        return {f"val_exit{k}": a for k, a in enumerate(accs)}

    hist = _run_epochs(_Loop(f"exits[{method}]", ee, opt, sched, ckpt, fp), epochs, data, step, batch, seed,
                       progress, on_epoch, train_mode)
    for p in bb:
        p.requires_grad_(True)
    return hist
