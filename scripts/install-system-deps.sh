#!/usr/bin/env bash
# Debian packages the tests and the exporter need: Fashion-MNIST (real data) and espeak-ng (keyword speech).
# Installs only what is missing; uses sudo when not root. Safe to run repeatedly.
set -euo pipefail
pkgs=(dataset-fashion-mnist espeak-ng)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: need Debian packages ${missing[*]} but apt-get is not available." >&2
  echo "  Install the equivalents by hand (Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist, espeak-ng)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: run as root or install sudo to get: ${missing[*]}" >&2; exit 1
  fi
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
