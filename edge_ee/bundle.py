"""Open a bundle directory: parse the manifest, check every file, locate the embedded bundles."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError
from .manifest import MANIFEST_NAME, Manifest, read_manifest, sha256_file

BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
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
    matches its sha256. Raises :class:`BundleError` naming the first problem found. Without ``path``,
    the embedded default bundle for ``task`` (image classification when None) is used."""
    bundle_dir = Path(path) if path is not None else default_bundle_path(task or "image_classification")
    manifest = read_manifest(bundle_dir)
    root = bundle_dir.resolve()
    for rel, sha in manifest.files():
        f = (bundle_dir / rel)
        try:
            real = f.resolve(strict=False)
            real.relative_to(root)
        except ValueError:
            raise BundleError(
                f"bundle {bundle_dir}: {rel} resolves to {real}, outside the bundle directory",
                "bundle files (and symlinks) must stay inside the bundle directory",
            ) from None
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
    return Bundle(path=bundle_dir, manifest=manifest)
