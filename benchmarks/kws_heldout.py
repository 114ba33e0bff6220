"""Keyword spotting on speakers and conditions the model never saw: per held-out axis, per acoustic
condition, full model beside early exit, and streaming detection in background speech.

    python benchmarks/kws_heldout.py                                   # the shipped bundle, writes the doc
    python benchmarks/kws_heldout.py --bundle B0 --bundle B1 --bundle B2   # seeds: mean and spread
    python benchmarks/kws_heldout.py --bundle OLD --json before.json --no-doc
    python benchmarks/kws_heldout.py --before before.json              # the doc shows that run beside this one

Clips (espeak-ng, lists from ``edge_ee_export.data.kws``; the same seed gives the same clips for every bundle):

* **axes** (clean): *all three held out* = a held-out accent x a held-out variant x a speed and pitch beyond
  the training range (a clip shares none of them with training); *accent only*, *variant only*, *prosody only*
  hold out one axis and take the others from training (English training accents, training prosody);
  *training speakers* uses training accents and variants with speeds/pitches between the training ones.
* **conditions** on the all-three split: clean; stationary noise (white/pink/brown) at 10 dB SNR; babble of
  5 held-out talkers (held-out accents and variants, sentences never containing a keyword, made apart from
  the training babble) at 20 and 10 dB; room reverberation (synthetic impulse responses, RT60 0.3-0.8 s).
* Per split and condition ``--per-class`` clips of each keyword, of unknown words, and of background only.
  Scoring merges ``silence`` and ``unknown`` into "no keyword" (the runtime never reports either).
* Each clip: the utterance at a random place in 1 s, peak level 0.1-0.9, background at the SNR to the
  utterance's RMS; features are the runtime's MFCC front end; the bundle runs in ``edge_ee.core.engine.Engine``
  one clip at a time, ``--mode full`` beside the calibrated early exit (mean MACs as a share of the full model).
* **streams**: a long stream of keywords and distractors by held-out speakers (``scripts/make_kws_sample.py``)
  with babble at 20 dB, with stationary noise at 10-25 dB, and reverberated; ``wav:`` source, 250 ms hop and
  the runtime's detection defaults (``benchmarks/streams.py``'s runner), precision/recall/F1.

Writes the ``kws-heldout`` section of docs/benchmarks.md (benchmarks/docsection.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "export"))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import onnxruntime  # noqa: E402
from docsection import write_section  # noqa: E402
from edge_ee_export.data import audio_aug as aug  # noqa: E402
from edge_ee_export.data import kws  # noqa: E402

from edge_ee.core.engine import Engine  # noqa: E402
from edge_ee.pipeline.features import mfcc_features  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
ABOUT = (
    "Clips are synthesised by espeak-ng (lists from `edge_ee_export.data.kws`; the same clip seed gives the same "
    "clips for every bundle). *All three held out*: a held-out accent (en-029, en-us-nyc) x a held-out variant "
    "x a speed and pitch beyond the training range (speeds 95/215 vs 115-195 wpm, pitches 8/92 vs 20-80), so a "
    "clip shares none of the three with training; *accent only* / *variant only* / *prosody only* hold out one "
    "axis and take the others from training (English training accents, training prosody). Conditions on the "
    "all-three split: stationary = white/pink/brown noise; babble = 5 held-out talkers saying sentences that "
    "never contain a keyword (not the training babble's sentences or talkers); reverb = synthetic room impulse "
    "responses. SNR is to the utterance's RMS. Every row has the same number of clips of each keyword, of "
    "unknown words and of background only; `silence` and `unknown` count as one class, *no keyword* (the "
    "runtime never reports either). The bundle runs in `edge_ee.core.engine.Engine` one clip at a time: *full model* "
    "= `--mode full`, *early exit* = its calibrated thresholds, MACs as a share of the full model's. Streams: "
    "keywords and distractors by held-out speakers (`scripts/make_kws_sample.py`), `wav:` source, 250 ms hop, "
    "the runtime's detection defaults (750 ms average, threshold 0.7, 1 s suppression), run by "
    "`benchmarks/streams.py`'s runner."
)
SR = kws.SR
NO_KW = ("silence", "unknown")

AXES = {
    "all three held out": (kws.HELDOUT_VOICES, kws.HELDOUT_VARIANTS, kws.HELDOUT_SPEEDS, kws.HELDOUT_PITCHES),
    "accent only": (kws.HELDOUT_VOICES, kws.TRAIN_VARIANTS, kws.TRAIN_SPEEDS, kws.TRAIN_PITCHES),
    "variant only": (kws.ENGLISH_TRAIN_VOICES, kws.HELDOUT_VARIANTS, kws.TRAIN_SPEEDS, kws.TRAIN_PITCHES),
    "prosody only": (kws.ENGLISH_TRAIN_VOICES, kws.TRAIN_VARIANTS, kws.HELDOUT_SPEEDS, kws.HELDOUT_PITCHES),
    "training speakers, in-between prosody": (kws.ENGLISH_TRAIN_VOICES, kws.TRAIN_VARIANTS, kws.EVAL_SPEEDS,
                                              kws.EVAL_PITCHES),
}
CONDITIONS = ["clean", "stationary noise 10 dB", "babble 20 dB", "babble 10 dB", "reverb RT60 0.3-0.8 s"]


# ------------------------------------------------------------------ clips
def utterances(split: str, per_class: int, seed: int,
               cache: Path) -> tuple[list[np.ndarray | None], list[str], list[str]]:
    """``per_class`` utterances of every keyword and of unknown words, and ``per_class`` background-only slots;
    their labels and voice variants (``-`` for background only)."""
    voices, variants, speeds, pitches = AXES[split]
    rng = np.random.default_rng([seed, list(AXES).index(split)])
    jobs: list[kws.Job] = []
    labels: list[str] = []
    for w in kws.KEYWORDS + ["unknown"]:
        for _ in range(per_class):
            text = str(rng.choice(kws.UNKNOWN_WORDS)) if w == "unknown" else w
            jobs.append(kws.Job(text, str(rng.choice(voices)), str(rng.choice(variants)), int(rng.choice(speeds)),
                                int(rng.choice(pitches))))
            labels.append(w)
    audio = kws.synthesize_all(jobs, cache, progress=False, store_name="kws-bench-audio.npz")
    return ([audio[j.key] for j in jobs] + [None] * per_class, labels + ["silence"] * per_class,
            [j.variant for j in jobs] + ["-"] * per_class)


def test_babble(seed: int, cache: Path) -> aug.BabblePool:
    """Babble material from held-out talkers, sentences drawn apart from the training babble's."""
    return kws.babble_pool(cache, 10_000 + seed, kws.HELDOUT_VOICES, kws.HELDOUT_VARIANTS, kws.EVAL_SPEEDS,
                           kws.EVAL_PITCHES, n=60, progress=False, store_name="kws-bench-babble.npz")


def clip(utt: np.ndarray | None, cond: str, rng: np.random.Generator, pool: aug.BabblePool) -> np.ndarray:
    out = np.zeros(kws.CLIP, np.float32)
    sig_rms = 0.05
    if utt is not None and utt.size:
        u = utt
        if cond.startswith("reverb"):
            y = aug.reverberate(u, aug.room_ir(rng, (0.3, 0.8)))
            u = y[: max(u.size, min(y.size, kws.CLIP))]
        u = u[: kws.CLIP]
        u = u * (float(rng.uniform(0.1, 0.9)) / (float(np.abs(u).max()) + 1e-9))
        off = int(rng.integers(0, kws.CLIP - u.size + 1))
        out[off: off + u.size] = u
        sig_rms = float(np.sqrt(np.mean(u.astype(np.float64) ** 2)))
    if cond.startswith("stationary"):
        out += aug.at_snr(aug.noise(str(rng.choice(["white", "pink", "brown"])), kws.CLIP, rng), sig_rms, 10.0)
    elif cond.startswith("babble"):
        out += aug.at_snr(pool.babble(kws.CLIP, rng, talkers=5), sig_rms, float(cond.split()[1]))
    out += rng.standard_normal(kws.CLIP).astype(np.float32) * 1e-4
    return np.clip(out, -1, 1)


def features(utts: list[np.ndarray | None], cond: str, seed: int, pool: aug.BabblePool) -> np.ndarray:
    rng = np.random.default_rng([seed, CONDITIONS.index(cond) if cond in CONDITIONS else 99])
    clips = np.stack([clip(u, cond, rng, pool) for u in utts])
    return mfcc_features(clips, kws.PREPROCESS).astype(np.float32)


# ------------------------------------------------------------------ evaluation
def score(eng: Engine, x: np.ndarray, labels: list[str], variants: list[str] | None = None) -> dict[str, Any]:
    names = eng.manifest.labels
    truth = np.array(["none" if t in NO_KW else t for t in labels])
    full_macs = eng.manifest.full_model_macs()
    res: dict[str, Any] = {"n": len(labels)}
    for mode in ("full", "adaptive"):
        pred, macs, exits = [], [], []
        for i in range(len(x)):
            r = eng.infer(x[i: i + 1][:, None], mode=mode)
            p = names[r.label_index]
            pred.append("none" if p in NO_KW else p)
            macs.append(r.macs)
            exits.append(r.exit_index)
        ok = np.array(pred) == truth
        kw = truth != "none"
        if variants is not None and mode == "full":
            v = np.array(variants)
            res["full_by_variant"] = {str(k): float(ok[v == k].mean()) for k in sorted(set(variants)) if k != "-"}
        res[mode] = {"accuracy": float(ok.mean()), "keyword_accuracy": float(ok[kw].mean()),
                     "macs_share": float(np.mean(macs) / full_macs),
                     "exit_fractions": (np.bincount(exits, minlength=eng.num_stages) / len(exits)).tolist()}
    return res


def stream_runs(bundle: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from make_kws_sample import heldout_speakers, make_stream, write_truth, write_wav
    from streams import run_stream

    voices, variants, where = heldout_speakers()
    pool = test_babble(args.seed, args.cache)
    out: dict[str, Any] = {}
    for cond in args.stream_conditions:
        key = tmp / f"stream-{cond.replace(' ', '_')}.wav"
        if not key.is_file():
            rng = np.random.default_rng(args.seed + 5)
            if cond.startswith("stationary"):
                pcm, truth = make_stream(args.stream_words, seed=args.seed, voices=voices, variants=variants)
            else:
                pcm, truth = make_stream(args.stream_words, seed=args.seed, voices=voices, variants=variants,
                                         snr_db=(300.0, 300.0))
                speech = pcm[np.abs(pcm) > 1e-6]
                rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
                if cond.startswith("babble"):
                    pcm = pcm + aug.at_snr(pool.babble(pcm.size, rng, talkers=5), rms, float(cond.split()[1]))
                else:  # reverberated stream, one room
                    pcm = aug.reverberate(pcm, aug.room_ir(rng, 0.6))[: pcm.size]
            write_wav(key, np.clip(pcm, -1, 1))
            write_truth(key, truth, where)
        opts = {"hop_s": 0.25, "kws_threshold": 0.7, "kws_average_s": 0.75, "kws_suppress_s": 1.0}
        out[cond] = {}
        for mode in ("full", "adaptive"):
            s = run_stream(bundle, f"wav:{key}", mode, opts)
            out[cond][mode] = {"f1": s["kws_score"]["f1"], "precision": s["kws_score"]["precision"],
                               "recall": s["kws_score"]["recall"], "macs_share": s["mean_macs"] / s["full_macs"],
                               "windows": s["frames"], "keywords": s["kws_score"].get("truth")}
            print(f"stream {cond} {mode}: F1 {s['kws_score']['f1']:.3f}", file=sys.stderr)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    pool = test_babble(args.seed, args.cache)
    data = {s: utterances(s, args.per_class, args.seed, args.cache) for s in AXES}
    res: dict[str, Any] = {"per_class": args.per_class, "seed": args.seed, "bundles": {}, "date":
                           time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "machine": f"{platform.machine()}, Python {platform.python_version()}, "
                                      f"onnxruntime {onnxruntime.__version__}"}
    feats = {("axis", s): features(data[s][0], "clean", args.seed, pool) for s in AXES}
    feats.update({("cond", c): features(data["all three held out"][0], c, args.seed, pool) for c in CONDITIONS})
    with tempfile.TemporaryDirectory() as td:
        for b in args.bundle:
            eng = Engine(str(b))
            r: dict[str, Any] = {"name": eng.manifest.name, "axes": {}, "conditions": {}}
            g = eng.manifest.calibration.guarantee
            r["guarantee"] = g.describe() if g is not None else "none (point estimate)"
            r["guarantee_per_condition"] = bool(g is not None and g.conditions)
            for s in AXES:
                r["axes"][s] = score(eng, feats[("axis", s)], data[s][1])
            for c in CONDITIONS:
                r["conditions"][c] = score(eng, feats[("cond", c)], data["all three held out"][1],
                                           data["all three held out"][2] if c == "clean" else None)
                print(f"{b} {c}: full {r['conditions'][c]['full']['accuracy']:.4f} ee "
                      f"{r['conditions'][c]['adaptive']['accuracy']:.4f} at "
                      f"{r['conditions'][c]['adaptive']['macs_share']:.3f}", file=sys.stderr)
            if args.stream_words:
                r["streams"] = stream_runs(Path(b), args, Path(td))
            if args.latency_blocks and b == args.bundle[0]:
                r["latency"] = timing(Path(b), feats[("cond", "clean")], args.latency_blocks)
            res["bundles"][str(b.relative_to(ROOT)) if b.is_relative_to(ROOT) else str(b)] = r
    res["seconds"] = time.perf_counter() - t0
    return res


def timing(bundle: Path, x: np.ndarray, blocks: int) -> dict[str, Any]:
    """Per-clip latency on these clips: the whole model as ONE onnxruntime graph, ``--mode full``, early exit
    and batches, side by side in interleaved blocks (``accuracy_vs_macs.latency``: the same measurement as the
    Fashion-MNIST rows)."""
    from accuracy_vs_macs import latency

    return latency(bundle, np.ascontiguousarray(x[:, None], dtype=np.float32), blocks=blocks)


def latency_line(r: dict[str, Any]) -> str:
    lat = r["latency"]

    def cell(k: str) -> str:
        c = lat[f"{k}_cpu_us"]
        return f"{np.median(c):.1f} [{min(c):.1f}-{max(c):.1f}] us"

    one = float(np.median(lat["one_cpu_us"]))
    ratio = {k: float(np.median(lat[f"{k}_cpu_us"])) / one for k in ("full", "adaptive", "batch")}
    return (f"Latency on the clean all-three-held-out clips (first bundle, {lat['n']} clips per block x "
            f"{lat['blocks']} interleaved blocks, 1 onnxruntime thread, thread CPU time per clip, median [min-max] "
            f"of the block means): the whole model as ONE onnxruntime graph {cell('one')}; `--mode full` "
            f"{cell('full')} (**{ratio['full']:.2f}x**); early exit one clip at a time {cell('adaptive')} "
            f"(**{ratio['adaptive']:.2f}x**) at {100 * lat['macs_ratio_timed']:.1f}% of the MACs; early exit in "
            f"batches of 32 {cell('batch')} per clip (**{ratio['batch']:.2f}x**).")


# ------------------------------------------------------------------ report
def _agg(rs: list[dict[str, Any]], path: tuple[str, ...]) -> tuple[float, float]:
    vals = []
    for r in rs:
        v: Any = r
        for k in path:
            v = v[k]
        vals.append(float(v))
    a = np.array(vals)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _fmt(m: tuple[float, float], n: int, pct: bool = True) -> str:
    scale = 100.0 if pct else 1.0
    s = f"{scale * m[0]:.1f}"
    if n > 1:
        s += f" ± {scale * m[1]:.1f}"
    return s + ("%" if pct else "")


def table(res: dict[str, Any], title: str) -> list[str]:
    rs = list(res["bundles"].values())
    n = len(rs)
    names = ", ".join(f"`{b}`" for b in res["bundles"])
    seeds = f"{n} bundles (mean ± sd over them)" if n > 1 else "one bundle"
    out = [f"**{title}**: {names}; {seeds}; {res['per_class']} clips per keyword, per unknown and per background "
           f"per row ({res['per_class'] * 12} clips), clip seed {res['seed']}, {res['date']}.", ""]
    out += ["| split (clean) | full model | early exit | drop | mean MACs of full |", "|---|---|---|---|---|"]
    for s in AXES:
        f, e = _agg(rs, ("axes", s, "full", "accuracy")), _agg(rs, ("axes", s, "adaptive", "accuracy"))
        d = [r["axes"][s]["full"]["accuracy"] - r["axes"][s]["adaptive"]["accuracy"] for r in rs]
        out.append(f"| {s} | {_fmt(f, n)} | {_fmt(e, n)} | {100 * np.mean(d):+.1f} pp | "
                   f"{_fmt(_agg(rs, ('axes', s, 'adaptive', 'macs_share')), n)} |")
    out += ["", "| condition (all three held out) | full model | early exit | drop (worst bundle) | "
                "mean MACs of full | exits |", "|---|---|---|---|---|---|"]
    for c in CONDITIONS:
        f, e = _agg(rs, ("conditions", c, "full", "accuracy")), _agg(rs, ("conditions", c, "adaptive", "accuracy"))
        d = [r["conditions"][c]["full"]["accuracy"] - r["conditions"][c]["adaptive"]["accuracy"] for r in rs]
        ex = np.mean([r["conditions"][c]["adaptive"]["exit_fractions"] for r in rs], axis=0)
        out.append(f"| {c} | {_fmt(f, n)} | {_fmt(e, n)} | {100 * np.mean(d):+.1f} pp ({100 * max(d):+.1f}) | "
                   f"{_fmt(_agg(rs, ('conditions', c, 'adaptive', 'macs_share')), n)} | "
                   f"{' / '.join(f'{100 * v:.0f}%' for v in ex)} |")
    if all("streams" in r for r in rs):
        conds = list(rs[0]["streams"])
        out += ["", "| stream (held-out speakers) | F1 full | F1 early exit | precision / recall early exit | "
                    "mean MACs of full |", "|---|---|---|---|---|"]
        for c in conds:
            ff = _agg(rs, ("streams", c, "full", "f1"))
            fe = _agg(rs, ("streams", c, "adaptive", "f1"))
            p = _agg(rs, ("streams", c, "adaptive", "precision"))
            rc = _agg(rs, ("streams", c, "adaptive", "recall"))
            out.append(f"| {c} | {_fmt(ff, n)} | {_fmt(fe, n)} | {_fmt(p, n)} / {_fmt(rc, n)} | "
                       f"{_fmt(_agg(rs, ('streams', c, 'adaptive', 'macs_share')), n)} |")
    if "full_by_variant" in rs[0]["conditions"]["clean"]:
        by = {k: [r["conditions"]["clean"]["full_by_variant"][k] for r in rs]
              for k in rs[0]["conditions"]["clean"]["full_by_variant"]}
        out += ["", "Full model, clean, all three held out, by held-out voice variant (~50 clips each): "
                + ", ".join(f"{k} {100 * float(np.mean(v)):.0f}%" for k, v in sorted(by.items(), key=lambda kv:
                                                                                     np.mean(kv[1]))) + "."]
    if "guarantee" in rs[0]:
        scope = {"per condition" if r["guarantee_per_condition"] else "pooled" for r in rs}
        out += ["", f"Thresholds: guarantee held {' / '.join(sorted(scope))}; first bundle: {rs[0]['guarantee']}."]
    if "latency" in rs[0]:
        out += ["", latency_line(rs[0])]
    return out + [""]


def targets(res: dict[str, Any]) -> list[str]:
    rs = list(res["bundles"].values())

    def acc(c: str, mode: str = "full") -> float:
        return float(np.mean([r["conditions"][c][mode]["accuracy"] for r in rs]))

    def macs(c: str) -> float:
        return float(np.mean([r["conditions"][c]["adaptive"]["macs_share"] for r in rs]))

    worst = max(r["conditions"][c]["full"]["accuracy"] - r["conditions"][c]["adaptive"]["accuracy"]
                for r in rs for c in CONDITIONS)
    rows = [("full model >= 90% clean", acc("clean") >= 0.90, f"{100 * acc('clean'):.1f}%"),
            ("full model >= 85% babble 20 dB", acc("babble 20 dB") >= 0.85, f"{100 * acc('babble 20 dB'):.1f}%"),
            ("full model >= 80% babble 10 dB", acc("babble 10 dB") >= 0.80, f"{100 * acc('babble 10 dB'):.1f}%"),
            ("early exit within 1 pp in every condition", worst <= 0.01, f"worst {100 * worst:+.1f} pp"),
            ("<= 55% of the MACs clean", macs("clean") <= 0.55, f"{100 * macs('clean'):.1f}%"),
            ("<= 70% of the MACs babble 10 dB", macs("babble 10 dB") <= 0.70, f"{100 * macs('babble 10 dB'):.1f}%")]
    if all("streams" in r for r in rs) and "babble 20 dB" in rs[0]["streams"]:
        f1 = float(np.mean([r["streams"]["babble 20 dB"]["adaptive"]["f1"] for r in rs]))
        rows.append(("stream F1 >= 85% babble 20 dB (early exit)", f1 >= 0.85, f"{100 * f1:.1f}%"))
    return ["| target (issue 15) | measured | met |", "|---|---|---|"] + \
        [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, ok, v in rows] + [""]


def render(res: dict[str, Any], before: dict[str, Any] | None, command: str, before_label: str = "Before") -> str:
    out = ["## Keyword spotting on held-out speakers, in background speech and reverberation", "",
           f"`{command}` on {res['machine']} ({res['seconds']:.0f} s). {ABOUT}", ""]
    out += table(res, "Now")
    out += targets(res)
    if before is not None:
        out += table(before, before_label)
        out += targets(before)
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", type=Path, default=None,
                    help="bundle directory; repeat for seeds (default edge_ee/bundles/kws)")
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="clip seed (the same clips for every bundle)")
    ap.add_argument("--stream-words", type=int, default=100, help="words per stream (0: no streams)")
    ap.add_argument("--stream-conditions", default="babble 20 dB,stationary noise 10-25 dB,reverb RT60 0.6 s",
                    type=lambda s: s.split(","))
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "edge_ee_export" / "kws")
    ap.add_argument("--latency-blocks", type=int, default=7,
                    help="interleaved timing blocks against the one graph, first bundle (0: no timing)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--before", type=Path, default=None, help="a previous --json result shown as 'before'")
    ap.add_argument("--before-label", default="Before", help="title of the --before tables")
    ap.add_argument("--from-json", type=Path, default=None, help="re-render a previous --json result, no runs")
    ap.add_argument("--no-doc", action="store_true")
    a = ap.parse_args()
    a.bundle = [Path(b).resolve() for b in (a.bundle or [ROOT / "edge_ee" / "bundles" / "kws"])]
    res = json.loads(a.from_json.read_text()) if a.from_json else run(a)
    command = res.get("command") or "python " + " ".join(["benchmarks/kws_heldout.py", *sys.argv[1:]])
    res["command"] = command
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    before = json.loads(a.before.read_text()) if a.before else None
    text = render(res, before, command, a.before_label)
    print(text)
    if not a.no_doc:
        write_section(DOC, "kws-heldout", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
