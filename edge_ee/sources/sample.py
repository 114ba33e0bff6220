"""``--source sample[:kws|:image]``: the small labelled sample shipped with edge-ee for the bundle's task."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .base import Source
from .registry import AUDIO_TASK, IMAGE_TASK, get, register_source

if TYPE_CHECKING:
    from ..core.manifest import Manifest

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
SAMPLE_TASKS = {"kws": AUDIO_TASK, "keyword_spotting": AUDIO_TASK, "audio": AUDIO_TASK, "kws-babble": AUDIO_TASK,
                "image": IMAGE_TASK, "image_classification": IMAGE_TASK}
# named samples other than the task's first file: the keywords again, in background speech (5 other talkers, 20 dB)
SAMPLE_FILES = {"kws-babble": "keywords_babble.wav"}


def sample_task(arg: str) -> str | None:
    """``sample:kws`` picks the keyword-spotting bundle; plain ``sample`` follows the bundle."""
    return SAMPLE_TASKS.get(arg.lower()) if arg else None


@register_source("sample", "the small labelled sample shipped with edge-ee for the bundle's task (Fashion-MNIST "
                 "test images / spoken keywords); sample:kws picks the keyword-spotting bundle and sample, "
                 "sample:kws-babble the same keywords in background speech",
                 task=sample_task, order=40)
def open_sample(arg: str, m: Manifest, opts: dict) -> Source:
    if arg and arg.lower() not in SAMPLE_TASKS:
        raise UsageError(f"sample:{arg}: unknown sample", "use sample, sample:kws, sample:kws-babble or sample:image")
    d = SAMPLES_DIR / m.task
    images, wav = get("images"), get("wav")
    if m.task == IMAGE_TASK and d.is_dir() and images is not None:
        return images.opener(str(d), m, opts)
    named = SAMPLE_FILES.get(arg.lower()) if arg else None
    wavs = [d / named] if named else sorted(d.glob("*.wav")) if d.is_dir() else []
    if wavs and wav is not None:
        return wav.opener(str(wavs[0]), m, opts)
    raise UsageError(f"no shipped sample for task {m.task!r} in this installation", "use another --source")
