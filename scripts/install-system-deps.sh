#!/usr/bin/env bash
# Debian packages the tests and the exporter need: Fashion-MNIST (real data), espeak-ng (keyword speech) and
# mosquitto (the MQTT broker the --mqtt tests start on a loopback port; the service is not enabled by the tests).
# Installs only what is missing; uses sudo when not root. Safe to run repeatedly. When another apt/dpkg process
# holds the lock (unattended-upgrades on a fresh machine), waits for it (DPKG_LOCK_WAIT seconds, default 600).
set -euo pipefail
pkgs=(dataset-fashion-mnist espeak-ng mosquitto)
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
WAIT=${DPKG_LOCK_WAIT:-600}
# apt >= 1.9 waits for the dpkg frontend lock itself when given a timeout; older apt ignores the option,
# so also poll the lock files (fuser, when present) before each step.
wait_lock() {
  command -v fuser >/dev/null 2>&1 || return 0
  local t=0
  while $SUDO fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1; do
    [ $t -eq 0 ] && echo "install-system-deps: another apt/dpkg process holds the lock; waiting (up to ${WAIT} s)"
    [ $t -ge "$WAIT" ] && { echo "install-system-deps: the dpkg lock is still held after ${WAIT} s" >&2; return 1; }
    sleep 2; t=$((t + 2))
  done
}
APT=(apt-get -o DPkg::Lock::Timeout="$WAIT")
wait_lock
$SUDO "${APT[@]}" update -qq
wait_lock
$SUDO "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
