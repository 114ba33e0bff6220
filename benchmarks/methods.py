"""The early-exit methods side by side on one backbone and one data set, with the oracle (issue 18).

    python benchmarks/methods.py --quick              # < 15 min on 2 cores: subsets, few epochs, 1 seed
    python benchmarks/methods.py                      # the docs: full data, 3 seeds, median and spread
    python benchmarks/methods.py --tasks fm           # Fashion-MNIST only (kws: the keyword DS-CNN)

Per task and seed: one backbone is trained (the recipe's model: ResNet-8 / DS-CNN); every method of
``edge_ee_export.methods`` attaches its exits to a copy of it and trains them its own way (frozen backbone or joint
fine-tuning); temperatures are fitted on ``calib_temp`` and thresholds selected on ``calib_thr`` for each accuracy-drop
target (0.5 / 1 / 2 pp, Learn-then-Test at 90 % confidence, the exporter's own calibration) with the method's own exit
rule; accuracy and mean MACs are then measured on the test split, which nothing was fitted on. The oracle answers with
hindsight: at equal accuracy it is the least MACs any threshold policy on those exits can spend (each sample right at
its earliest correct exit, the rest at exit 0), the lower bound for the placement.

Latency (first seed): every method is exported as a bundle and timed with ``edge_ee.core.engine.Engine`` (adaptive mode,
one sample at a time, 1 onnxruntime thread) against the whole default model as ONE onnxruntime graph, side by side in
interleaved blocks (``interleave.py``). int8 vs float for the default method, and the footprint of the torch-free
runtime (a subprocess in which importing torch fails) for each shipped bundle.

Writes the ``methods`` section of docs/benchmarks.md, docs/img/methods_frontier.png and the ``methods`` section of
README.md (the winner per task); ``--json`` keeps the raw numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "export", ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from docsection import write_section  # noqa: E402

DROPS = (0.005, 0.01, 0.02)
LEAD_SEED = 0  # its bundles are exported (latency, int8) and its frontier drawn
CONFIDENCE = 0.9
TASKS = {"fm": ("Fashion-MNIST", "resnet8"), "kws": ("keyword spotting", "dscnn")}


@dataclass
class Budget:
    """How much data and training one run spends."""

    seeds: list[int]
    backbone_epochs: dict[str, int]
    exit_epochs: dict[str, int]
    train_limit: dict[str, int | None]
    test_limit: int | None
    latency_n: int
    latency_blocks: int
    engine_limit: int | None  # test samples run through the Engine for int8 vs float
    footprint_runs: int = 5
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Budget(seeds=[0], backbone_epochs={"fm": 3, "kws": 12}, exit_epochs={"fm": 2, "kws": 5},
               train_limit={"fm": 12000, "kws": None}, test_limit=None, latency_n=200, latency_blocks=5,
               engine_limit=2000, footprint_runs=3)
# sized for ~1 h on 2 cores shared with other jobs: 12k of the 54k training images, short one-cycle schedules
FULL = Budget(seeds=[0, 1, 2], backbone_epochs={"fm": 5, "kws": 16}, exit_epochs={"fm": 2, "kws": 5},
              train_limit={"fm": 12000, "kws": None}, test_limit=None, latency_n=500, latency_blocks=7,
              engine_limit=None)


# --------------------------------------------------------------------------- data


def load_task(task: str, seed: int, budget: Budget, fm_data: str, kws_cache: str) -> Any:
    """The exporter's data set for ``task`` (whatever splits its data module offers today)."""
    if task == "fm":
        from edge_ee_export.data import fashion_mnist

        return fashion_mnist.load(fm_data, seed=seed, calib=6000, train_limit=budget.train_limit["fm"],
                                  test_limit=budget.test_limit)
    from edge_ee_export.data import kws

    kw: dict[str, Any] = {"seed": seed}
    params = inspect.signature(kws.load).parameters
    if "progress" in params:
        kw["progress"] = False
    if "train_limit" in params and budget.train_limit["kws"]:
        kw["train_limit"] = budget.train_limit["kws"]
    return kws.load(kws_cache, **kw)


def test_splits(data: Any) -> dict[str, Any]:
    """Every test split the data set offers; the first is the one the tables use (held-out speakers when offered)."""
    splits = {"test": data.test, **(data.extra or {})}
    held = [k for k in splits if "heldout" in k or "held_out" in k]
    order = held[:1] + [k for k in splits if k not in held[:1]]
    return {k: splits[k] for k in order}


# --------------------------------------------------------------------------- per-method evaluation


def oracle_min_macs(correct: np.ndarray, cum: np.ndarray, accuracy: float) -> float | None:
    """Least mean MACs of any exit policy on these exits reaching ``accuracy`` (hindsight): every sample pays exit 0;
    the cheapest-to-get-right samples are answered at their earliest correct exit. None: not reachable."""
    n = correct.shape[1]
    need = max(0, math.ceil(accuracy * n - 1e-9))
    can = correct.any(0)
    if need > int(can.sum()):
        return None
    extra = np.sort(cum[correct.argmax(0)[can]] - cum[0])
    return float((n * cum[0] + extra[:need].sum()) / n)


def oracle_curve(correct: np.ndarray, cum: np.ndarray, full_macs: float, points: int = 40) -> list[dict[str, float]]:
    n = correct.shape[1]
    top = float(correct.any(0).mean())
    lo = float(correct[0].mean())
    out = []
    for a in np.linspace(lo, top, points):
        m = oracle_min_macs(correct, cum, float(a))
        if m is not None:
            out.append({"accuracy": math.ceil(a * n - 1e-9) / n, "macs_ratio": m / full_macs})
    return out


def evaluate_variant(v: Any, ee: Any, data: Any, backbone_macs: int, seed: int, want_frontier: bool) -> dict[str, Any]:
    """Temperatures, thresholds per drop target, test accuracy and MACs of one trained variant."""
    from edge_ee_export.calibrate import collect, ece, exit_table, fit_temperature, select_thresholds

    a = collect(ee, data.calib_temp)
    b = collect(ee, data.calib_thr)
    k = ee.num_early
    temps = [fit_temperature(a.logits[i], a.labels) for i in range(k + 1)]
    ct = ee.cost_table()
    seg, heads = ct["segment_macs"], ct["head_macs"]
    rules = list(v.rules) if v.rules else None
    cals = {d: select_thresholds(b, temps, seg, heads, d, CONFIDENCE, rules, seed=seed) for d in DROPS}
    res: dict[str, Any] = {"variant": v.name, "splits": list(ee.meta.splits),
                           "heads": [e.family for e in ee.meta.exits], "temperatures": temps,
                           "head_macs": int(sum(heads[:-1])),
                           "head_macs_ratio": float(sum(heads[:-1]) / backbone_macs),
                           "own_full_macs": int(ct["full_macs"]), "tests": {}}
    for name, split in test_splits(data).items():
        t = collect(ee, split)
        correct = np.stack([lg.argmax(1) == t.labels for lg in t.logits])
        cum = np.cumsum(np.array(seg) + np.array(heads), dtype=np.float64)
        r: dict[str, Any] = {"n": t.n, "full_accuracy": float(correct[-1].mean()),
                             "exit_accuracy": [float(c.mean()) for c in correct],
                             "exit_macs_ratio": [float(c / backbone_macs) for c in cum],
                             "oracle": {"accuracy": float(correct.any(0).mean()),
                                        "macs_ratio": float(cum[np.where(correct.any(0), correct.argmax(0),
                                                                         k)].mean() / backbone_macs)},
                             "drops": {}}
        for d, cal in cals.items():
            tab = exit_table(t, temps, cal["rule"], seg, heads)
            pt = tab.point(tab.key_thresholds(cal["chosen"]["thresholds"]))
            orc = oracle_min_macs(correct, cum, float(pt.accuracy))
            r["drops"][str(d)] = {
                "rule": cal["rule"], "thresholds": cal["chosen"]["thresholds"], "accuracy": pt.accuracy,
                "drop": r["full_accuracy"] - float(pt.accuracy), "macs_ratio": float(pt.mean_macs / backbone_macs),
                "exit_fractions": pt.exit_fractions, "guaranteed": cal.get("guarantee") is not None,
                "oracle_macs_ratio_same_accuracy": None if orc is None else orc / backbone_macs,
                "oracle_macs_ratio_at_target": (lambda m: None if m is None else m / backbone_macs)(
                    oracle_min_macs(correct, cum, r["full_accuracy"] - d)),
            }
        if want_frontier:
            tab_thr = exit_table(b, temps, cals[0.01]["rule"], seg, heads)
            tab = exit_table(t, temps, cals[0.01]["rule"], seg, heads)
            pts = [tab.point(tab.key_thresholds(p.thresholds)) for p in tab_thr.frontier(levels=30, max_points=40)]
            r["frontier"] = sorted(({"accuracy": float(p.accuracy), "macs_ratio": float(p.mean_macs / backbone_macs),
                                     "oracle_macs_ratio": float(oracle_min_macs(correct, cum, float(p.accuracy))
                                                                / backbone_macs)}
                                    for p in pts), key=lambda p: p["macs_ratio"])
            r["oracle_curve"] = oracle_curve(correct, cum, backbone_macs)
        res["tests"][name] = r
    res["cal"] = {
        "method": "temperature on calib_temp, thresholds on calib_thr (learn-then-test)", **cals[0.01],
        "temperatures": temps,
        "ece_before": [ece(a.logits[i], a.labels, 1.0) for i in range(k + 1)],
        "ece_after": [ece(a.logits[i], a.labels, temps[i]) for i in range(k + 1)],
        "split": {"temperature": {"name": data.calib_temp.name, "size": len(data.calib_temp)},
                  "thresholds": {"name": data.calib_thr.name, "size": len(data.calib_thr)}},
    }
    return res


def run_task(task: str, budget: Budget, fm_data: str, kws_cache: str, work: Path | None,
             variants: list[str] | None = None, progress: bool = False, log=print) -> dict[str, Any]:
    """Train and evaluate every variant on every seed; export the first seed's bundles into ``work`` (None: no
    bundles, no latency)."""
    import torch
    from edge_ee_export import api
    from edge_ee_export.attach import count_macs
    from edge_ee_export.methods import VARIANTS, build, train, training_key
    from edge_ee_export.train import evaluate, set_seed, train_backbone
    from edge_ee_export.zoo import RECIPES

    torch.set_num_threads(1)
    arch = TASKS[task][1]
    recipe = RECIPES[arch]
    names = variants or list(VARIANTS)
    out: dict[str, Any] = {"task": task, "arch": arch, "seeds": {}, "bundles": {}}
    for seed in budget.seeds:
        lead = seed == LEAD_SEED
        data = load_task(task, seed, budget, fm_data, kws_cache)
        out["sizes"] = data.sizes()
        set_seed(seed)
        model = recipe.build(num_classes=len(data.labels), **({"in_channels": 1} if arch != "dscnn" else {}))
        t0 = time.process_time()
        train_backbone(model, data, epochs=budget.backbone_epochs[task], seed=seed, progress=progress)
        bb_s = time.process_time() - t0
        example = data.train.x[:2]
        backbone_macs = count_macs(model, example)
        per: dict[str, Any] = {"backbone": {"train_cpu_s": bb_s, "test_accuracy": evaluate(model, data.test),
                                            "macs": backbone_macs}}
        log(f"[{task} seed {seed}] backbone {bb_s:.0f} CPU s, test accuracy {per['backbone']['test_accuracy']:.4f}")
        trained: dict[tuple, tuple[Any, float]] = {}
        for name in names:
            v = VARIANTS[name]
            key = training_key(v, recipe)
            if key not in trained:
                set_seed(seed)
                ee = build(v, model, example, recipe, len(data.labels))
                _, secs = train(v, ee, data, budget.exit_epochs[task], seed=seed, progress=progress)
                trained[key] = (ee, secs)
            ee, secs = trained[key]
            r = evaluate_variant(v, ee, data, backbone_macs, seed, want_frontier=lead)
            r["train_cpu_s"] = secs
            r["shares_training_with"] = next((n for n in names[: names.index(name)]
                                              if training_key(VARIANTS[n], recipe) == key), None)
            if lead and work is not None:
                # the default gets its own bundle: its manifest carries its own calibration (int8 vs float)
                own = r["shares_training_with"] is None or name == "default"
                bdir = work / task / (name if own else r["shares_training_with"])
                if own:
                    api.export(ee, r["cal"], data, bdir, name=f"{task}-{name}", seed=seed,
                               command="benchmarks/methods.py", method=name)
                out["bundles"][name] = str(bdir)
                if name == "default":
                    api.export(ee, r["cal"], data, work / task / "default_int8", name=f"{task}-default-int8",
                               seed=seed, quantize=True, command="benchmarks/methods.py", method=name)
                    out["bundles"]["default_int8"] = str(work / task / "default_int8")
            del r["cal"]
            per[name] = r
            t1 = r["tests"][next(iter(r["tests"]))]
            log(f"[{task} seed {seed}] {name}: full {t1['full_accuracy']:.4f}, at 1 pp "
                f"{t1['drops']['0.01']['accuracy']:.4f} / {100 * t1['drops']['0.01']['macs_ratio']:.1f}% MACs, "
                f"train {secs:.0f} CPU s")
        out["seeds"][str(seed)] = per
        if work is not None:  # one file per seed: seeds can train in separate processes (--seed-list)
            work.mkdir(parents=True, exist_ok=True)
            (work / f"{task}.seed{seed}.json").write_text(json.dumps(
                {"task": task, "arch": arch, "sizes": out["sizes"], "seed": seed, "per": per,
                 "bundles": out["bundles"] if lead else {}}, default=float))
        if lead or "test_inputs" not in out:
            out["test_inputs"] = test_splits(data)
    return out


def merge_seed_files(files: list[Path]) -> dict[str, Any]:
    """The per-seed results of one task (``TASK.seedN.json``, written by separate runs) as one run's result."""
    parts = sorted((json.loads(f.read_text()) for f in files), key=lambda d: d["seed"])
    out: dict[str, Any] = {"task": parts[0]["task"], "arch": parts[0]["arch"], "sizes": parts[0]["sizes"],
                           "seeds": {str(d["seed"]): d["per"] for d in parts}, "bundles": {}}
    for d in parts:
        out["bundles"].update(d["bundles"])
    return out


# --------------------------------------------------------------------------- latency (Engine vs one graph)


def latency(res: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Per-sample latency of every method at every drop target, interleaved with the default's one graph."""
    from interleave import interleaved, one_graph_session

    from edge_ee.core.bundle import load_bundle
    from edge_ee.core.engine import Engine

    x = next(iter(res["test_inputs"].values())).x.numpy()
    first = res["seeds"][str(min(int(s) for s in res["seeds"]))]
    one, one_in, one_out = one_graph_session(load_bundle(res["bundles"]["default"]))
    macs: dict[str, list[int]] = {}
    calls: dict[str, Any] = {}

    def cycle(fn, name: str):
        pos = [0]

        def call() -> None:
            j = pos[0] % len(x)
            pos[0] += 1
            fn(x[j: j + 1], name)
        return call

    calls["one graph"] = cycle(lambda s, _n: one.run([one_out], {one_in: s}), "one graph")
    for name, bdir in res["bundles"].items():
        if name not in first:
            continue
        for d in DROPS:
            pt = first[name]["tests"][next(iter(first[name]["tests"]))]["drops"][str(d)]
            eng = Engine(bdir)
            eng.set_rule(pt["rule"])
            eng.set_thresholds(pt["thresholds"])
            key = f"{name}@{d}"
            macs[key] = []
            calls[key] = cycle(lambda s, n, e=eng: macs[n].append(e.infer(s).macs), key)
    t = interleaved(calls, budget.latency_n, budget.latency_blocks)
    full = int(first["backbone"]["macs"])
    return {"n": budget.latency_n, "blocks": budget.latency_blocks,
            "cpu_us": {k: v.cpu_us for k, v in t.items()}, "wall_us": {k: v.wall_us for k, v in t.items()},
            "macs_ratio_timed": {k: float(np.mean(v) / full) for k, v in macs.items()}}


def bundle_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def int8_vs_float(res: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """Accuracy (full mode and the bundle's calibrated early exit), MACs, latency and size of the default method's
    float and int8 bundles, measured with the Engine on the test split."""
    from interleave import interleaved

    from edge_ee.core.engine import Engine

    split = next(iter(res["test_inputs"].values()))
    x, y = split.x.numpy(), split.y.numpy()
    if budget.engine_limit:
        x, y = x[: budget.engine_limit], y[: budget.engine_limit]
    out: dict[str, Any] = {"n": len(y)}
    engines = {}
    for kind in ("default", "default_int8"):
        eng = Engine(res["bundles"][kind])
        engines[kind] = eng
        full = [eng.infer(x[i: i + 1], mode="full").label_index for i in range(len(y))]
        ad = [eng.infer(x[i: i + 1]) for i in range(len(y))]
        out[kind] = {"full_accuracy": float(np.mean(np.array(full) == y)),
                     "accuracy": float(np.mean(np.array([r.label_index for r in ad]) == y)),
                     "macs_ratio": float(np.mean([r.macs for r in ad]) / eng.manifest.full_model_macs()),
                     "thresholds": list(eng.thresholds), "rule": eng.rules[0],
                     "bundle_bytes": bundle_bytes(Path(res["bundles"][kind]))}

    def cycle(eng: Any, mode: str):
        pos = [0]

        def call() -> None:
            j = pos[0] % len(x)
            pos[0] += 1
            eng.infer(x[j: j + 1], mode=mode)
        return call

    t = interleaved({f"{k} {m}": cycle(e, m) for k, e in engines.items() for m in ("adaptive", "full")},
                    budget.latency_n, budget.latency_blocks)
    out["cpu_us"] = {k: v.cpu_us for k, v in t.items()}
    out["wall_us"] = {k: v.wall_us for k, v in t.items()}
    return out


# --------------------------------------------------------------------------- footprint (torch-free runtime)

FOOTPRINT = r"""
import json, sys, time
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this measurement")
        return None
sys.meta_path.insert(0, _NoTorch())
t0 = time.perf_counter()
import numpy as np
from edge_ee.core.engine import Engine
t1 = time.perf_counter()
eng = Engine(sys.argv[1])
r = eng.infer(np.zeros(eng.input_shape, eng.input_dtype))
t2 = time.perf_counter()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"import_s": t1 - t0, "first_inference_s": t2 - t1, "maxrss_mb": hwm / 1024,
                  "torch_loaded": "torch" in sys.modules}))
"""


def install_size() -> dict[str, Any]:
    """Bytes on disk of the runtime's install: the edge_ee package and its required distributions (recursively,
    markers evaluated here; extras not included), from the installed distributions' file lists."""
    import re
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging ships with pip
        Requirement = None  # type: ignore[assignment,misc]

    def deps(dist: metadata.Distribution) -> list[str]:
        names = []
        for req in dist.requires or []:
            if Requirement is not None:
                r = Requirement(req)
                if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                    continue
                names.append(r.name)
            elif "extra ==" not in req:
                names.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
        return names

    import tomllib

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = []
    for req in proj.get("dependencies", []):
        if Requirement is not None:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate():
                todo.append(r.name)
    seen: dict[str, int] = {}
    while todo:
        n = todo.pop()
        key = n.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            d = metadata.distribution(n)
        except metadata.PackageNotFoundError:
            seen[key] = 0
            continue
        total = 0
        for f in d.files or []:
            p = Path(d.locate_file(f))
            if p.is_file():
                total += p.stat().st_size
        seen[key] = total
        todo += deps(d)
    pkg = ROOT / "edge_ee"
    code = sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file() and "__pycache__" not in f.parts
               and "bundles" not in f.relative_to(pkg).parts)
    bundles = {b.name: bundle_bytes(b) for b in sorted((pkg / "bundles").iterdir()) if (b / "manifest.json").is_file()}
    return {"dists": dict(sorted(seen.items(), key=lambda t: -t[1])), "edge_ee_code": code, "bundles": bundles,
            "total": sum(seen.values()) + code + sum(bundles.values())}


def footprint(runs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res: dict[str, Any] = {"install": install_size(), "bundles": {}}
    for b in sorted((ROOT / "edge_ee/bundles").iterdir()):
        if not (b / "manifest.json").is_file():
            continue
        rows = []
        for _ in range(runs + 1):  # the first run warms the page cache and is discarded
            p = subprocess.run([sys.executable, "-c", FOOTPRINT, str(b)], capture_output=True, text=True, env=env,
                               check=True)
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        rows = rows[1:]
        res["bundles"][b.name] = {k: [r[k] for r in rows] for k in rows[0]}
    return res


# --------------------------------------------------------------------------- report


def med(v: list[float]) -> float:
    return float(statistics.median(v))


def spread(v: list[float], scale: float = 100.0, d: int = 1) -> str:
    """median [min-max] (one value: just the value)."""
    if len(v) == 1:
        return f"{scale * v[0]:.{d}f}"
    return f"{scale * med(v):.{d}f} [{scale * min(v):.{d}f}-{scale * max(v):.{d}f}]"


def collect_seeds(res: dict[str, Any], name: str, split: str) -> list[dict[str, Any]]:
    return [per[name]["tests"][split] | {"train_cpu_s": per[name]["train_cpu_s"],
                                         "head_macs_ratio": per[name]["head_macs_ratio"]}
            for per in res["seeds"].values() if name in per]


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """Per variant: median over seeds at each drop target; the winner = least median MACs at the 1 pp target."""
    from edge_ee_export.methods import VARIANTS

    first = next(iter(res["seeds"].values()))
    split = next(iter(first["default"]["tests"])) if "default" in first else None
    rows = {}
    for name in VARIANTS:
        if name not in first:
            continue
        rs = collect_seeds(res, name, split)
        rows[name] = {d: {"macs": med([r["drops"][str(d)]["macs_ratio"] for r in rs]),
                          "acc": med([r["drops"][str(d)]["accuracy"] for r in rs]),
                          "drop": med([r["drops"][str(d)]["drop"] for r in rs])} for d in DROPS}
        rows[name]["full"] = med([r["full_accuracy"] for r in rs])
    ranked = sorted(rows, key=lambda n: rows[n][0.01]["macs"])
    return {"split": split, "rows": rows, "ranked": ranked, "winner": ranked[0] if ranked else None}


def hindsight(t: dict[str, Any], drop: float = 0.01) -> str:
    """The cheapest frontier point (thresholds from calib_thr's grid) whose *test* accuracy is within ``drop`` of the
    full model: what the exits could do with thresholds picked on the test set (optimistic, no guarantee)."""
    ok = [p for p in t.get("frontier", []) if p["accuracy"] >= t["full_accuracy"] - drop - 1e-12]
    if not ok:
        return "-"
    p = min(ok, key=lambda q: q["macs_ratio"])
    return f"{100 * p['accuracy']:.2f}% / {100 * p['macs_ratio']:.1f}%"


def task_section(res: dict[str, Any], lat: dict[str, Any] | None, q8: dict[str, Any] | None) -> list[str]:
    from edge_ee_export.methods import VARIANTS

    title, arch = TASKS[res["task"]]
    s = summary(res)
    split = s["split"]
    seeds = list(res["seeds"])
    first = res["seeds"][seeds[0]]
    bb = [per["backbone"] for per in res["seeds"].values()]
    lines = [f"### {title} ({arch})", "",
             f"Data: {', '.join(f'{k} {v}' for k, v in res['sizes'].items())}; table split: `{split}` "
             f"({first['default']['tests'][split]['n']} samples). Seeds {', '.join(seeds)}; cells are median "
             f"[min-max] over seeds. Backbone: {bb[0]['macs']:,} MACs, test accuracy "
             f"{spread([b['test_accuracy'] for b in bb], d=2)}%, trained in "
             f"{spread([b['train_cpu_s'] for b in bb], 1, 0)} CPU s. *MACs* are mean adaptive MACs (segments and "
             "heads run) in % of the plain backbone; *acc* is "
             "test accuracy; *full* is the variant's own full-model accuracy (its final exit: joint training changes "
             "the backbone); thresholds for each drop target were selected on `calib_thr` with the method's rule.", "",
             "| method | rule | exits (heads) | head MACs | full acc | 0.5 pp: acc / MACs | 1 pp: acc / MACs | "
             "2 pp: acc / MACs | best point within 1 pp, hindsight (seed " + seeds[0] + ") | exit training CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in VARIANTS.items():
        if name not in first:
            continue
        rs = collect_seeds(res, name, split)
        r0 = first[name]
        rules = sorted({r["drops"][str(d)]["rule"] for r in rs for d in DROPS})
        cells = []
        for d in DROPS:
            acc = [r["drops"][str(d)]["accuracy"] for r in rs]
            mac = [r["drops"][str(d)]["macs_ratio"] for r in rs]
            cells.append(f"{spread(acc, d=2)}% / **{spread(mac)}%**")
        shared = f" (training shared with {VARIANTS[r0['shares_training_with']].title})" \
            if r0.get("shares_training_with") else ""
        lines.append(f"| {v.title}{shared} | {', '.join(rules)} | {', '.join(r0['splits'])} ({r0['heads'][0]}) | "
                     f"{spread([r['head_macs_ratio'] for r in rs])}% | "
                     f"{spread([r['full_accuracy'] for r in rs], d=2)}% | {' | '.join(cells)} | "
                     f"{hindsight(r0['tests'][split])} | {spread([r['train_cpu_s'] for r in rs], 1, 0)} |")
    # the oracle on the default's exits: least MACs at the same accuracy targets, and the earliest-correct exit
    rs = collect_seeds(res, "default", split)
    cells = []
    for d in DROPS:
        m = [r["drops"][str(d)]["oracle_macs_ratio_at_target"] for r in rs]
        cells.append("-" if any(v is None for v in m) else
                     f"{spread([r['full_accuracy'] - d for r in rs], d=2)}% / **{spread(m)}%**")
    lines.append(f"| oracle on the default's exits (hindsight) | - | - | - | "
                 f"{spread([r['full_accuracy'] for r in rs], d=2)}% | {' | '.join(cells)} | - | - |")
    lines.append("")
    lines.append(f"The classic oracle (every sample at its earliest correct exit of the default's heads, the final "
                 f"exit when none is right) reaches {spread([r['oracle']['accuracy'] for r in rs], d=2)}% at "
                 f"{spread([r['oracle']['macs_ratio'] for r in rs])}% of the MACs.")
    lines.append("")
    if lat:
        one = lat["cpu_us"]["one graph"]
        lines += [f"Latency (seed {seeds[0]}, {lat['n']} test samples per block x {lat['blocks']} interleaved blocks, "
                  "1 onnxruntime thread; per sample, thread CPU time median [min-max] of the block means, wall time "
                  f"after the slash). Whole default model as ONE onnxruntime graph: {med(one):.1f} "
                  f"[{min(one):.1f}-{max(one):.1f}] us / {med(lat['wall_us']['one graph']):.1f} us.", "",
                  "| method | 0.5 pp: us (x one graph) / MACs | 1 pp | 2 pp |", "|---|---|---|---|"]
        for name, v in VARIANTS.items():
            if f"{name}@0.01" not in lat["cpu_us"]:
                continue
            cells = []
            for d in DROPS:
                c, w = lat["cpu_us"][f"{name}@{d}"], lat["wall_us"][f"{name}@{d}"]
                cells.append(f"{med(c):.1f} [{min(c):.1f}-{max(c):.1f}] / {med(w):.1f} us "
                             f"(**{med(c) / med(one):.3f}x**) / {100 * lat['macs_ratio_timed'][f'{name}@{d}']:.1f}%")
            lines.append(f"| {v.title} | {' | '.join(cells)} |")
        lines.append("")
    if q8:
        f, i = q8["default"], q8["default_int8"]

        def us(k: str) -> str:
            c = q8["cpu_us"][k]
            return f"{med(c):.1f} [{min(c):.1f}-{max(c):.1f}] / {med(q8['wall_us'][k]):.1f} us"
        lines += [f"int8 vs float, the default method (seed {seeds[0]}, measured with the Engine on {q8['n']} test "
                  "samples; the int8 bundle's thresholds are re-selected on its own outputs by the exporter):", "",
                  "| bundle | full-model acc | early-exit acc | MACs | rule, thresholds | adaptive latency | "
                  "full-mode latency | bundle size |", "|---|---|---|---|---|---|---|---|"]
        for kind, r in (("float32", f), ("int8 (static QDQ)", i)):
            k = "default" if kind == "float32" else "default_int8"
            lines.append(f"| {kind} | {100 * r['full_accuracy']:.2f}% | {100 * r['accuracy']:.2f}% | "
                         f"{100 * r['macs_ratio']:.1f}% | {r['rule']}, {', '.join(f'{t:.3f}' for t in r['thresholds'])}"
                         f" | {us(k + ' adaptive')} | {us(k + ' full')} | {r['bundle_bytes'] / 1024:.0f} KiB |")
        lines.append("")
    return lines


def winner_lines(res: dict[str, Any]) -> list[str]:
    from edge_ee_export.methods import VARIANTS

    s = summary(res)
    if not s["winner"]:
        return []
    rows, w = s["rows"], s["winner"]
    title = TASKS[res["task"]][0]
    ru = s["ranked"][1] if len(s["ranked"]) > 1 else None
    d = rows["default"][0.01] if "default" in rows else None
    txt = (f"- **{title}** ({TASKS[res['task']][1]}, {len(res['seeds'])} seed(s), medians): at a 1 pp drop target "
           f"**{VARIANTS[w].title}** needs the fewest MACs, {100 * rows[w][0.01]['macs']:.1f}% of the backbone at "
           f"{100 * rows[w][0.01]['acc']:.2f}% accuracy (its full model {100 * rows[w]['full']:.2f}%)")
    if ru:
        # paired by seed (same backbone, same splits): is the margin larger than the seed-to-seed spread?
        diff = [100 * (per[ru]["tests"][s["split"]]["drops"]["0.01"]["macs_ratio"]
                       - per[w]["tests"][s["split"]]["drops"]["0.01"]["macs_ratio"]) for per in res["seeds"].values()]
        ahead = sum(x > 0 for x in diff)
        txt += (f"; runner-up {VARIANTS[ru].title} {100 * rows[ru][0.01]['macs']:.1f}% at "
                f"{100 * rows[ru][0.01]['acc']:.2f}% (full {100 * rows[ru]['full']:.2f}%): "
                f"{100 * (rows[ru][0.01]['macs'] - rows[w][0.01]['macs']):.1f} points of MACs fewer (paired by seed: "
                + ", ".join(f"{x:+.1f}" for x in diff) + f"; ahead on {ahead} of {len(diff)} seeds)")
    if d and w != "default":
        txt += (f"; the current default {100 * d['macs']:.1f}% at {100 * d['acc']:.2f}% (full "
                f"{100 * rows['default']['full']:.2f}%)")
    lat = res.get("latency")
    if lat:  # MACs are not time: the winner's measured latency against the one graph, and the fastest method's
        one = statistics.median(lat["cpu_us"]["one graph"])
        ratio = {k.split("@")[0]: statistics.median(v) / one for k, v in lat["cpu_us"].items() if k.endswith("@0.01")}
        fastest = min(ratio, key=ratio.get)
        txt += (f". Timed at 1 pp (seed 0, CPU time against the whole model as ONE onnxruntime graph): "
                f"{VARIANTS[w].title} {ratio[w]:.2f}x"
                + (f", fastest {VARIANTS[fastest].title} {ratio[fastest]:.2f}x" if fastest != w else "")
                + ("; no method is faster than the one graph" if ratio[fastest] >= 1.0 else ""))
    return [txt + "."]


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from edge_ee_export.methods import VARIANTS

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), squeeze=False)
    for ax, res in zip(axes[0], results):
        first = res["seeds"][str(min(int(s) for s in res["seeds"]))]
        split = next(iter(first["default"]["tests"]))
        for i, (name, v) in enumerate(VARIANTS.items()):
            if name not in first:
                continue
            t = first[name]["tests"][split]
            pts = t["frontier"]
            ax.plot([100 * p["macs_ratio"] for p in pts], [100 * p["accuracy"] for p in pts], "-", color=f"C{i}",
                    lw=1.2, label=v.title)
            d = t["drops"]["0.01"]
            ax.plot(100 * d["macs_ratio"], 100 * d["accuracy"], "*", ms=11, color=f"C{i}")
            ax.plot(100 * first[name]["own_full_macs"] / first["backbone"]["macs"], 100 * t["full_accuracy"], "o",
                    mfc="none", color=f"C{i}")
        oc = first["default"]["tests"][split]["oracle_curve"]
        ax.plot([100 * p["macs_ratio"] for p in oc], [100 * p["accuracy"] for p in oc], "k--", lw=1,
                label="oracle (default's exits)")
        ax.plot(100, 100 * first["backbone"]["test_accuracy"], "ks", ms=7, label="full model (backbone)")
        full = first["default"]["tests"][split]["full_accuracy"]
        ax.set_ylim(100 * full - 8, 100 * max(full, oc[-1]["accuracy"] if oc else full) + 1)
        ax.set_xlim(0, 105)
        ax.set_title(f"{TASKS[res['task']][0]} ({res['arch']}), `{split}`, seed {min(int(s) for s in res['seeds'])}",
                     fontsize=9)
        ax.set_xlabel("mean MACs, % of the backbone")
        ax.set_ylabel("test accuracy, %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Early-exit methods: test accuracy vs MACs\n(thresholds from calib_thr; star: the 1 pp target; "
                 "o: the method's own full model)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def footprint_lines(fp: dict[str, Any]) -> list[str]:
    ins = fp["install"]
    mb = 1024 * 1024
    top = ", ".join(f"{k} {v / mb:.1f}" for k, v in list(ins["dists"].items())[:6])
    lines = [f"Footprint of the runtime without torch (`pip install edge-ee` dependencies as installed here, no "
             f"extras): {ins['total'] / mb:.1f} MiB on disk, of which {top} MiB; edge_ee's own code "
             f"{ins['edge_ee_code'] / 1024:.0f} KiB; shipped bundles "
             + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in ins["bundles"].items())
             + ". Per shipped bundle, a fresh interpreter in which importing torch fails "
             f"({len(next(iter(fp['bundles'].values()))['import_s'])} runs after one discarded; median [min-max]):", "",
             "| bundle | import numpy + edge_ee.core.engine | Engine load + first inference | peak resident memory | "
             "torch loaded |", "|---|---|---|---|---|"]
    for b, r in fp["bundles"].items():
        lines.append(f"| {b} | {spread(r['import_s'], 1000, 0)} ms | {spread(r['first_inference_s'], 1000, 0)} ms | "
                     f"{spread(r['maxrss_mb'], 1, 0)} MiB | {'yes' if any(r['torch_loaded']) else 'no'} |")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="subsets, few epochs, one seed (< 15 min on 2 cores)")
    p.add_argument("--tasks", default="fm,kws", help="comma-separated: fm (Fashion-MNIST), kws (keyword DS-CNN)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 1 quick, 3 full)")
    p.add_argument("--seed-list", default=None, type=lambda s: [int(v) for v in s.split(",")],
                   help="comma-separated seeds to train in this process and keep in WORK/TASK.seedN.json, no report; "
                        "a later --reuse run merges them (seeds in parallel processes)")
    p.add_argument("--fm-data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--kws-cache", default=str(ROOT / ".cache/edge_ee_export/kws"))
    p.add_argument("--work", default=str(ROOT / ".cache/edge_ee_export/methods"), help="bundles are written here")
    p.add_argument("--doc", default=str(ROOT / "docs/benchmarks.md"))
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    p.add_argument("--img", default=str(ROOT / "docs/img/methods_frontier.png"))
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--no-docs", action="store_true", help="print only; do not write docs/README")
    p.add_argument("--reuse", action="store_true",
                   help="reuse the trained results of the last run with the same budget (work/TASK.json): "
                        "re-measure latency, int8 and footprint and rewrite the report")
    a = p.parse_args(argv)
    budget = QUICK if a.quick else FULL
    if a.seeds:
        budget.seeds = list(range(a.seeds))
    if a.seed_list:
        budget.seeds = a.seed_list
        for task in [t for t in a.tasks.split(",") if t]:
            run_task(task, budget, a.fm_data, a.kws_cache, Path(a.work) / ("quick" if a.quick else "full"),
                     log=lambda s: print(s, flush=True))
        return 0
    started = dt.datetime.now(dt.timezone.utc)
    t_all = time.time()
    results, raw = [], {}
    out: list[str] = []
    tasks = [t for t in a.tasks.split(",") if t]
    trained_at: list[dt.datetime] = []
    for task in tasks:
        if task not in TASKS:
            p.error(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
        work = Path(a.work) / ("quick" if a.quick else "full")
        saved = work / f"{task}.json"
        seed_files = sorted(work.glob(f"{task}.seed*.json"))
        if a.reuse and (saved.is_file() or seed_files):  # the trained variants of earlier runs (bundles in work/)
            res = merge_seed_files(seed_files) if seed_files else json.loads(saved.read_text())
            trained_at.append(max(dt.datetime.fromtimestamp(f.stat().st_mtime, dt.timezone.utc)
                                  for f in (seed_files or [saved])))
            res["test_inputs"] = test_splits(load_task(task, budget.seeds[0], budget, a.fm_data, a.kws_cache))
        else:
            res = run_task(task, budget, a.fm_data, a.kws_cache, work, log=lambda s: print(s, flush=True))
            saved.write_text(json.dumps({k: v for k, v in res.items() if k != "test_inputs"}, default=float))
        lat = latency(res, budget)
        q8 = int8_vs_float(res, budget)
        res.pop("test_inputs")
        raw[task] = {**res, "latency": lat, "int8": q8}
        res["latency"] = lat
        results.append(res)
        out += task_section(res, lat, q8)
        print("\n".join(task_section(res, lat, q8)), flush=True)
    fp = footprint(budget.footprint_runs)
    raw["footprint"] = fp
    out += footprint_lines(fp)
    win = [ln for r in results for ln in winner_lines(r)]
    args = argv if argv is not None else sys.argv[1:]
    cmd = "python benchmarks/methods.py " + " ".join(shlex.quote(x) for x in args)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime
    import torch

    head = ["## Early-exit methods side by side (issue 18)", "",
            f"Generated by `{cmd.strip()}` on {started:%Y-%m-%d %H:%M} UTC ({(time.time() - t_all) / 60:.0f} min"
            + (f"; the training and accuracy numbers are those of the same command without `--reuse`, finished "
               f"{max(trained_at):%Y-%m-%d %H:%M} UTC" if trained_at else "") + "), "
            f"{cpu}, {os.cpu_count()} cores shared with other jobs, training at `nice -n 10` with 1 torch thread "
            f"(torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}). "
            "Budget per seed: " + "; ".join(
                f"{TASKS[t][0]}: backbone {budget.backbone_epochs[t]} epochs, exits {budget.exit_epochs[t]} epochs, "
                f"{budget.train_limit[t] or 'all'} training samples" for t in tasks)
            + ". Every number comes from this script; nothing is carried over.",
            "",
            "Methods (`export/edge_ee_export/methods.py`): "
            + "; ".join(f"**{v.title}**: {v.summary}" for v in __import__("edge_ee_export.methods",
                                                                            fromlist=["VARIANTS"]).VARIANTS.values())
            + ". All share the recipe's split points (T-RecX: one of them), the backbone of each seed, the "
            "temperature and Learn-then-Test threshold selection (90 % confidence) and the test split. "
            "The oracle knows the labels: at a given accuracy it is the least MACs any threshold policy on the "
            "default's exits could spend.", "",
            "Winner per task (least MACs at the 1 pp target):", "", *win, "",
            f"![accuracy vs MACs per method]({os.path.relpath(a.img, Path(a.doc).parent)})", ""]
    text = "\n".join(head + out)
    print("\n".join(win))
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1, default=float))
    if not a.no_docs:
        plot(results, Path(a.img))
        write_section(Path(a.doc), "methods", text)
        write_section(Path(a.readme), "methods",
                      "Early-exit methods compared on the same backbone and data ([docs/benchmarks.md]"
                      "(docs/benchmarks.md#early-exit-methods-side-by-side-issue-18), `python benchmarks/methods.py`;"
                      " MACs in % of the plain backbone, full-model accuracy in brackets):\n\n" + "\n".join(win))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
