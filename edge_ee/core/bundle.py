"""Open a bundle directory: parse the manifest, check every file, locate the embedded bundles."""

from __future__ import annotations

import mmap
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError
from .manifest import MANIFEST_NAME, Manifest, check_relative_path, read_manifest, sha256_file
from .onnx_scan import ELEM_TYPES, ExternalRef, ModelInfo, scan_model

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
DEFAULT_BUNDLES = {
    "image_classification": "fashion_mnist",
    "keyword_spotting": "kws",
}


@dataclass
class Bundle:
    """A parsed, checked bundle on disk."""

    path: Path
    manifest: Manifest

    def file(self, rel: str) -> Path:
        return self.path / rel

    def content_hash(self) -> str:
        """sha256 over the manifest file: identifies this exact bundle (profiles are keyed by it)."""
        return sha256_file(self.path / MANIFEST_NAME)

    @property
    def is_embedded(self) -> bool:
        try:
            self.path.relative_to(BUNDLES_DIR)
            return True
        except ValueError:
            return False


def default_bundle_path(task: str = "image_classification") -> Path:
    name = DEFAULT_BUNDLES.get(task)
    path = BUNDLES_DIR / name if name else None
    if path is None or not (path / MANIFEST_NAME).is_file():
        raise BundleError(
            f"no embedded default bundle for task {task!r} in this installation",
            "pass --model BUNDLE_DIR",
        )
    return path


def load_bundle(path: str | os.PathLike[str] | None = None, verify_checksums: bool = True,
                task: str | None = None) -> Bundle:
    """Parse ``manifest.json`` and check that every named file exists inside the bundle and
    matches its sha256, and that every ONNX external-data file a model refers to is listed in the
    manifest (so it is inside the bundle and checksummed too). Raises :class:`BundleError` naming the
    first problem found. Without ``path``, the embedded default bundle for ``task`` (image
    classification when None) is used."""
    bundle_dir = Path(path) if path is not None else default_bundle_path(task or "image_classification")
    manifest = read_manifest(bundle_dir)
    root = bundle_dir.resolve()
    for rel, sha in manifest.files():
        f = _inside(bundle_dir, root, rel)
        if not f.is_file():
            raise BundleError(
                f"bundle {bundle_dir}: file {rel} named in the manifest is missing",
                "re-copy the whole bundle directory or re-export it",
            )
        if verify_checksums:
            try:
                actual = sha256_file(f)
            except OSError as e:
                raise BundleError(f"bundle {bundle_dir}: cannot read {rel} ({e.strerror})") from e
            if actual != sha:
                raise BundleError(
                    f"bundle {bundle_dir}: checksum mismatch for {rel} "
                    f"(manifest {sha[:12]}..., file {actual[:12]}...): the file was modified or damaged",
                    "re-copy the bundle from its source or re-export it; do not edit bundle files by hand",
                )
    if verify_checksums:  # the trusted fast start skips this too (onnxruntime >= 1.19 still keeps
        check_models(bundle_dir, manifest)  # external data inside the model's directory)
    return Bundle(path=bundle_dir, manifest=manifest)


def _inside(bundle_dir: Path, root: Path, rel: str) -> Path:
    """``bundle_dir / rel``, refused when it (or a symlink on the way) resolves outside the bundle."""
    f = bundle_dir / rel
    try:
        real = f.resolve(strict=False)
    except (OSError, ValueError) as e:  # a symlink loop, a NUL byte
        raise BundleError(f"bundle {bundle_dir}: cannot resolve {rel!r} ({e})") from None
    try:
        real.relative_to(root)
    except ValueError:
        raise BundleError(
            f"bundle {bundle_dir}: {rel} resolves to {real}, outside the bundle directory",
            "bundle files (and symlinks) must stay inside the bundle directory",
        ) from None
    return f


def model_files(manifest: Manifest) -> list[str]:
    """The ONNX models of a bundle (segments, heads and v2 merged graphs), relative to the bundle directory."""
    graphs = [s.merged for s in manifest.stages] + [manifest.full]
    return ([s.segment.file for s in manifest.stages] + [s.head.file for s in manifest.stages if s.head]
            + [g.file for g in graphs if g is not None])


def check_models(bundle_dir: Path, manifest: Manifest) -> int:
    """Read every ONNX model's header data before onnxruntime loads it:

    - every external-data file a model refers to must be listed in the manifest's ``external_data``
      (which puts it inside the bundle, with a checked sha256);
    - the bundle input's dtype must be the one the first segment takes, and each head and segment must
      take the element type the previous segment gives (else the first inference fails, exit 5).

    Returns the number of external tensors."""
    infos = {rel: _scan(bundle_dir, rel) for rel in model_files(manifest)}
    n = sum(_check_external(bundle_dir, manifest, rel, info.external) for rel, info in infos.items())
    _check_types(manifest, infos)
    return n


def _scan(bundle_dir: Path, rel: str) -> ModelInfo:
    what = f"bundle {bundle_dir}: {rel}"
    try:
        with open(bundle_dir / rel, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise BundleError(f"{what} is empty, not an ONNX model", "re-export the bundle")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return scan_model(mm, what)
    except OSError as e:
        raise BundleError(f"{what}: cannot read ({e.strerror})") from e


def _check_types(manifest: Manifest, infos: dict[str, ModelInfo]) -> None:
    def name(t: int) -> str:
        return ELEM_TYPES.get(t, f"ONNX type {t}")

    s0 = manifest.stages[0].segment
    firsts = [(s0.file, s0.input)] + [(g.file, g.input) for g in (manifest.stages[0].merged, manifest.full) if g]
    for file, inp in firsts:  # every graph the bundle input is fed to
        got = infos[file].inputs.get(inp, 0)
        if got and ELEM_TYPES.get(got) != manifest.input.dtype:
            raise BundleError(f"manifest: input.dtype is {manifest.input.dtype!r} but {file} takes "
                              f"{name(got)} input {inp!r}",
                              f"set input.dtype to {name(got)!r} (and its preprocessing), or re-export the bundle")
    for k, st in enumerate(manifest.stages):
        out = infos[st.segment.file].outputs.get(st.segment.output, 0)
        takers = [(st.head.file, st.head.input)] if st.head else []
        if k + 1 < len(manifest.stages):
            nxt = manifest.stages[k + 1]
            takers += [(nxt.segment.file, nxt.segment.input)] + (
                [(nxt.merged.file, nxt.merged.input)] if nxt.merged else [])
        for file, inp in takers:
            want = infos[file].inputs.get(inp, 0)
            if out and want and out != want:
                raise BundleError(f"bundle: {st.segment.file} gives {name(out)} {st.segment.output!r} but {file} "
                                  f"takes {name(want)}", "re-export the bundle")


def _check_external(bundle_dir: Path, manifest: Manifest, rel: str, refs: list[ExternalRef]) -> int:
    """Every external-data file ``rel`` refers to must be listed in the manifest's ``external_data``."""
    listed = {e["file"] for e in manifest.external_data}
    hint = ("list the file in the manifest's external_data with its sha256 (edge_ee.core.manifest.write_manifest "
            "fills it), or save the model with its weights inside (onnx.save(..., save_as_external_data=False))")
    what = f"bundle {bundle_dir}: {rel}"
    n = 0
    for ref in refs:
        n += 1
        tensor = f"tensor {ref.tensor!r}"
        if not ref.location:
            raise BundleError(f"{what}: {tensor} is marked external but names no file", "re-export the bundle")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), ref.location))
        try:
            check_relative_path(ref.location, "location")
            check_relative_path(target, "location")
        except BundleError:
            raise BundleError(f"{what}: {tensor} keeps its data in {ref.location[:200]!r}, outside the bundle",
                              hint) from None
        if target not in listed:
            raise BundleError(f"{what}: {tensor} keeps its data in {target!r}, which the manifest does not "
                              "list (so it is not checksummed)", hint)
    return n
