"""Budget control under a load step: controller + deadline guard vs static thresholds, one run.

For each configuration (the controller, then static operating points from an on-device profile,
with and without the deadline guard) the loop runs ``--seconds`` on labelled Fashion-MNIST test
images; half-way a CPU hog (a busy-loop subprocess, bounded in time) starts on the other core.
Reported per configuration: fraction of frames within the latency budget, p99 latency, accuracy;
for the controller also the re-settle time after the load step (first time after the step from
which the 50-frame rolling mean latency stays within 10% of the setpoint for 0.5 s).
The budget defaults to the middle between the first exit's and the full model's latency.

    .venv/bin/python benchmarks/budget_control.py [--model BUNDLE] [--seconds 6] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_ee.budget import parse_budget  # noqa: E402
from edge_ee.bundle import load_bundle  # noqa: E402
from edge_ee.control.hook import ControllerHook  # noqa: E402
from edge_ee.control.operating_points import from_profile  # noqa: E402
from edge_ee.datasets import FASHION_MNIST_DIR, FASHION_MNIST_LABELS, load_fashion_mnist  # noqa: E402
from edge_ee.engine import Engine  # noqa: E402
from edge_ee.profile import run_profile  # noqa: E402
from edge_ee.runner import RunConfig, RunHook, Runner  # noqa: E402
from edge_ee.sources.base import Frame, Source  # noqa: E402

DATA = FASHION_MNIST_DIR
FASHION = FASHION_MNIST_LABELS


class ArraySource(Source):
    """Cycles over in-memory images with ground truth."""

    def __init__(self, images: np.ndarray, truths: list[str], start: int = 0) -> None:
        self.images, self.truths, self.i = images, truths, start
        self.description = f"{len(images)} in-memory images"

    def read(self) -> Frame | None:
        j = self.i % len(self.images)
        f = Frame(self.i, self.images[j], meta={"truth": self.truths[j]})
        self.i += 1
        return f


class Trace(RunHook):
    def __init__(self) -> None:
        self.t: list[float] = []
        self.ms: list[float] = []
        self.ok: list[bool] = []
        self.op: list[int] = []

    def on_result(self, runner: Any, frame: Frame, result: Any, record: dict[str, Any]) -> None:
        self.t.append(time.perf_counter())
        self.ms.append(record["total_ms"])
        self.ok.append(bool(record.get("correct")))
        self.op.append(record.get("operating_point", -1))


def load_data(bundle_labels: list[str], n: int) -> tuple[np.ndarray, list[str]]:
    if (DATA / "t10k-images-idx3-ubyte.gz").is_file():
        x, y = load_fashion_mnist(DATA, "test")
        x, y = x[:n], y[:n]
    else:  # the shipped sample
        import cv2

        files = sorted((ROOT / "edge_ee/samples/image_classification").glob("*/*.png"))
        x = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])
        y = np.array([[_norm(c) for c in FASHION].index(_norm(f.parent.name)) for f in files])
    names = [bundle_labels[int(v)] if len(bundle_labels) == 10 else FASHION[int(v)] for v in y]
    return x, names


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


def hog(seconds: float, core: int | None) -> subprocess.Popen:
    code = f"import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass\n"
    pre = None
    if core is not None and hasattr(os, "sched_setaffinity"):
        def pre() -> None:
            os.sched_setaffinity(0, {core})
    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=pre)


def run_config(engine: Engine, src: Source, seconds: float, budget: str | None, hooks: list[RunHook],
               hog_core: int | None) -> tuple[Trace, float]:
    tr = Trace()
    cfg = RunConfig(budget=parse_budget(budget) if budget else None, duration_s=seconds, status=False)
    r = Runner(engine, src, cfg, hooks=[*hooks, tr])
    # start the hog half-way: a timer thread
    import threading

    procs: list[subprocess.Popen] = []
    t_step = [0.0]

    def start() -> None:
        t_step[0] = time.perf_counter()
        procs.append(hog(seconds / 2 + 0.5, hog_core))

    timer = threading.Timer(seconds / 2, start)
    timer.start()
    try:
        r.run()
    finally:
        timer.cancel()
        for p in procs:
            p.wait(timeout=seconds + 5)
    return tr, t_step[0]


def metrics(tr: Trace, budget_ms: float) -> dict[str, Any]:
    ms = np.array(tr.ms)
    return {"frames": len(ms), "within": float((ms <= budget_ms).mean()), "p99": float(np.percentile(ms, 99)),
            "mean": float(ms.mean()), "accuracy": float(np.mean(tr.ok))}


def resettle(tr: Trace, t_step: float, setpoint_ms: float, hold_s: float = 0.5, win: int = 50) -> float | None:
    t = np.array(tr.t)
    ms = np.array(tr.ms)
    if len(ms) < win or not t_step:
        return None
    roll = np.convolve(ms, np.ones(win) / win, mode="same")
    ok = np.abs(roll - setpoint_ms) <= 0.1 * setpoint_ms
    after = np.where(t >= t_step)[0]
    for i in after:
        j = np.where(t >= t[i] + hold_s)[0]
        if not len(j):
            return None
        if ok[i:j[0] + 1].all():
            return float(t[i] - t_step)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--budget", default=None, help="latency budget, default: between first exit and full model")
    ap.add_argument("--seconds", type=float, default=6.0, help="per configuration")
    ap.add_argument("--statics", type=int, default=6, help="static operating points compared")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--hog-core", type=int, default=1, help="core for the CPU hog (-1: not pinned)")
    ap.add_argument("--bench-core", type=int, default=0, help="core for the benchmark (-1: not pinned)")
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks.md (budget-control section)")
    a = ap.parse_args()
    if a.bench_core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {a.bench_core})
    hog_core = a.hog_core if a.hog_core >= 0 else None
    bundle = load_bundle(a.model)
    engine = Engine(bundle)
    x, truths = load_data(bundle.manifest.labels, a.images)
    # on-device profile: frontier and stage latencies (energy not needed here)
    from edge_ee.power import EstimatedSource, PowerSampler

    sampler = PowerSampler(EstimatedSource()).start()
    sampler.set_baseline(0.0)
    prof = run_profile(engine, ArraySource(x, truths), frames=min(2000, len(x)), warmup=50, sampler=sampler)
    sampler.stop()
    ex = prof["exits"]
    lo, hi = ex[0]["adaptive_ms"], prof["full_model"]["latency_ms"]
    budget_ms = float(a.budget.removesuffix("ms")) if a.budget else round((lo + hi) / 2 + 0.02, 3)
    budget = f"{budget_ms}ms"
    print(f"bundle {bundle.manifest.name}: first exit {lo:.4f} ms, full model {hi:.4f} ms -> budget {budget}",
          file=sys.stderr)
    rows: list[dict[str, Any]] = []
    src = ArraySource(x, truths)
    hook = ControllerHook(parse_budget(budget), profile=prof)
    tr, t_step = run_config(engine, src, a.seconds, budget, [hook], hog_core)
    m = metrics(tr, budget_ms)
    m.update(name="controller + guard", resettle_s=resettle(tr, t_step, hook.ctrl.target * 1e3 if hook.ctrl else 0),
             ops=f"{min(tr.op)}..{max(tr.op)} of {len(hook.frontier)}")
    rows.append(m)
    front = from_profile(prof)
    assert front is not None
    picks = sorted({int(round(v)) for v in np.linspace(0, len(front) - 1, a.statics)})
    for i in picks:
        engine.set_thresholds(front.points[i].thresholds)
        for guard in (False, True):
            tr, _ = run_config(engine, src, a.seconds, budget if guard else None, [], hog_core)
            m = metrics(tr, budget_ms)
            m.update(name=f"static point {i}" + (" + guard" if guard else ""),
                     thresholds=[round(t, 3) for t in front.points[i].thresholds])
            rows.append(m)
    ctrl = rows[0]
    statics = [r for r in rows[1:] if "guard" not in r["name"]]
    meeting = [r for r in statics if r["p99"] <= max(ctrl["p99"], budget_ms)]
    best = max(meeting, key=lambda r: r["accuracy"]) if meeting else None
    training = subprocess.run(["pgrep", "-fc", "edge_ee_export"], capture_output=True, text=True).stdout.strip()
    text = report(bundle, prof, budget, rows, best, a, training)
    print(text)
    if a.write:
        write_section(ROOT / "docs/benchmarks.md", "budget-control", text)


def report(bundle: Any, prof: dict, budget: str, rows: list[dict], best: dict | None, a: Any, training: str) -> str:
    c = rows[0]
    lines = [
        "## Budget control under a load step",
        "",
        f"`benchmarks/budget_control.py` on {platform.machine()} {prof['device'].get('cpu')} "
        f"({os.cpu_count()} cores), onnxruntime {prof['device'].get('onnxruntime')}, bundle "
        f"`{bundle.manifest.name}`, Fashion-MNIST t10k, {a.seconds:g} s per configuration, a busy-loop CPU hog "
        f"on core {a.hog_core} from half-way (benchmark pinned to core {a.bench_core}). Budget {budget} "
        f"(first exit {prof['exits'][0]['adaptive_ms']:.4f} ms, full model {prof['full_model']['latency_ms']:.4f} ms "
        f"on this machine). Machine shared with other work"
        + (f" (a training run was active: {training} processes)" if training not in ("", "0") else "") + ".",
        "",
        "| configuration | frames | within budget | p99 ms | mean ms | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['frames']} | {100 * r['within']:.2f}% | {r['p99']:.4f} | "
                     f"{r['mean']:.4f} | {100 * r['accuracy']:.2f}% |")
    rs = c.get("resettle_s")
    lines += [
        "",
        f"Controller: operating points used {c['ops']}; re-settle after the load step: "
        + (f"{rs:.3f} s" if rs is not None else "not within the run (see rolling mean)") + ".",
        "Best static setting meeting the controller's p99 "
        + (f"({best['name']}, p99 {best['p99']:.4f} ms): accuracy {100 * best['accuracy']:.2f}% vs the "
           f"controller's {100 * c['accuracy']:.2f}%." if best else ": none of the static settings met it."),
    ]
    if "untrained" in (bundle.manifest.description or "").lower() or "placeholder" in bundle.manifest.name:
        lines += ["", "**Caveat:** this bundle is the untrained placeholder (random weights, ~10% accuracy, "
                  "inference of a few microseconds): budget, latencies and accuracies are at the noise level of "
                  "the Python loop and timer, so the >= 99% / accuracy / 1 s re-settle targets are not assessed "
                  "by this run. Re-run with the trained bundle (`make bundles`) for meaningful numbers."]
    return "\n".join(lines)


def write_section(path: Path, name: str, text: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
