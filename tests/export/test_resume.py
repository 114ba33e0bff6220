"""Training checkpoints: a run interrupted and resumed gives the same weights as one that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_ee_export.data import Dataset, TensorSplit  # noqa: E402
from edge_ee_export.train import set_seed, train_backbone  # noqa: E402


class _Stop(Exception):
    pass


def _data(stop_at_call: int | None) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 6, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    split = TensorSplit(x, y, "train")
    calls = {"n": 0}

    def fresh(seed: int) -> TensorSplit:  # an epoch's view; "stops" the run at the given call, as a kill would
        calls["n"] += 1
        if stop_at_call is not None and calls["n"] == stop_at_call:
            raise _Stop
        return TensorSplit(x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)), y)

    d = Dataset(train=split, calib_temp=split, calib_thr=split, test=split, labels=["a", "b", "c"], preprocess={},
                layout="NCHW", task="image_classification")
    d.train_fn = fresh
    return d


def _model() -> torch.nn.Module:
    set_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(16, 3))


def test_resumed_training_equals_uninterrupted(tmp_path: Path) -> None:
    whole = _model()
    train_backbone(whole, _data(None), epochs=3, lr=0.05, batch=16, seed=0, ckpt=tmp_path / "a.pt", progress=False)
    parts = _model()
    with pytest.raises(_Stop):
        train_backbone(parts, _data(2), epochs=3, lr=0.05, batch=16, seed=0, ckpt=tmp_path / "b.pt", progress=False)
    torch.manual_seed(123)  # a new process: the global generators start elsewhere
    resumed = _model()
    torch.manual_seed(123)
    train_backbone(resumed, _data(None), epochs=3, lr=0.05, batch=16, seed=0, ckpt=tmp_path / "b.pt", progress=False)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
