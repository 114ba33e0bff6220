#!/usr/bin/env bash
# arm64 smoke test of edge-ee under qemu user-mode emulation: no binfmt_misc, no change to the host's dpkg
# architectures or apt state. What it proves: the wheel installs with aarch64 wheels of every dependency
# (Python 3.11, Raspberry Pi OS Bookworm / Debian 12) and the runtime runs on an emulated Cortex-A72;
# and pip resolves the dependencies for aarch64 on Python 3.10 (JetPack 6). What it does not prove:
# real boards (timings, power sensors, cameras), GPU execution providers (CUDA/TensorRT).
#
# usage: scripts/arm64-smoke.sh [REPO_DIR] [WORK_DIR]
#   REPO_DIR default: this script's repository; WORK_DIR default: REPO_DIR/.cache/arm64-smoke
#   (downloads are kept there and reused: apt lists, .debs, pip's cache).
# needs: apt-get, dpkg-deb, a python3 >= 3.8 with pip ($PYTHON), network to PyPI and Debian.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
REPO=$(cd "${1:-$HERE}" && pwd)
W=${2:-$REPO/.cache/arm64-smoke}; mkdir -p "$W"; W=$(cd "$W" && pwd)
PYV=${PYV:-3.11}            # the emulated interpreter (Debian 12's)
PYV_JETPACK=${PYV_JETPACK:-3.10}
PYTHON=${PYTHON:-python3}
T_ALL=$(date +%s)
PASSED=0  # checks passed; the last line is "arm64-smoke: N passed, N failed" (CI reads it)
fail() { echo "FAILED: $1"; echo "arm64-smoke: $PASSED passed, 1 failed"; exit 1; }
step() { STEP_NAME=$1; STEP_T0=$(date +%s%N); echo "== $1"; }
done_() { local ms=$(( ($(date +%s%N) - STEP_T0) / 1000000 )); printf '   %-24s %4d.%01d s\n' "$STEP_NAME" $((ms/1000)) $((ms%1000/100)); }
# the host's local wheel directories and config hold x86 wheels: pip sees PyPI only, with a cache in $W
PIPX=(env -u PIP_FIND_LINKS -u PIP_NO_INDEX PIP_CONFIG_FILE=/dev/null "$PYTHON" -m pip --disable-pip-version-check
      --cache-dir "$W/pip-cache" -q)
plat() { echo --only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
              --platform manylinux_2_28_aarch64 --python-version "$1" --implementation cp --abi "cp${1/./}"; }

# 1. private apt state (Debug::NoLocking: never waits for or takes the host's dpkg lock)
step apt-update
A=(-o Dir::State="$W/apt/state" -o Dir::State::status="$W/apt/status" -o Dir::Cache="$W/apt/cache"
   -o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
   -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q)
mkdir -p "$W/apt/state/lists/partial" "$W/apt/cache/archives/partial"; : > "$W/apt/status"
apt-get "${A[@]}" update >/dev/null
done_

# 2. qemu-aarch64-static from Debian's qemu-user-static, extracted (never installed: no binfmt registration)
step qemu
mkdir -p "$W/debs" && cd "$W/debs"
DEBFILES=()
fetch_debs() {  # the candidate version of each package, downloaded unless that exact .deb is already here
  local want=() p name arch v f
  DEBFILES=()
  for p in "$@"; do
    name=${p%%:*}; arch=${p#*:}
    v=$(apt-cache "${A[@]}" policy "$p" | awk '/Candidate:/ {print $2}')
    [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "arm64-smoke: no candidate for $p" >&2; exit 1; }
    f="${name}_${v/:/%3a}_${arch}.deb"   # apt's file name: the epoch colon is written %3a
    DEBFILES+=("$f")
    [ -f "$f" ] || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] || apt-get "${A[@]}" download "${want[@]}" >/dev/null
  for f in "${DEBFILES[@]}"; do [ -f "$f" ] || { echo "arm64-smoke: $f was not downloaded" >&2; exit 1; }; done
}
fetch_debs qemu-user-static:amd64
dpkg-deb --fsys-tarfile "${DEBFILES[0]}" | tar -x -C "$W" ./usr/bin/qemu-aarch64-static
Q=$W/usr/bin/qemu-aarch64-static; "$Q" --version | head -1
done_

# 3. minimal arm64 Debian 12 rootfs: python3.11 + the shared libraries it and the wheels need
step rootfs
PKGS="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libstdc++6 libgcc-s1 zlib1g
 libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libgomp1 libcrypt1 libuuid1 libtinfo6
 libncursesw6 libreadline8 libdb5.3 libnsl2 libtirpc3"
fetch_debs $(for p in $PKGS; do printf '%s:arm64 ' "$p"; done) media-types:all
R=$W/rootfs; rm -rf "$R"; mkdir -p "$R/proc"
for f in "${DEBFILES[@]}"; do dpkg-deb -x "$f" "$R"; done
# onnxruntime's cpuinfo parses /proc/cpuinfo at load time and segfaults on the host's x86 one;
# qemu -L serves $R/proc/cpuinfo instead. Cortex-A72 (Raspberry Pi 4), one entry per host CPU.
for i in $(seq 0 $(( $(nproc) - 1 ))); do
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
done > "$R/proc/cpuinfo"
done_

# 4. edge-ee wheel (pure Python) + aarch64 wheels of its dependencies into a target dir
step wheels
rm -rf "$W/wheel" "$W/site"
"${PIPX[@]}" wheel --no-deps -w "$W/wheel" "$REPO"
WHL=$(ls "$W"/wheel/edge_ee-*-py3-none-any.whl)
"${PIPX[@]}" install --target "$W/site" $(plat "$PYV") "$WHL[opencv,mqtt]" > "$W/pip-install.log" 2>&1 \
  || { cat "$W/pip-install.log"; exit 1; }
done_

# 5. JetPack 6 (Python 3.10, aarch64): the dependencies resolve to binary wheels (nothing is run)
step "resolve-py$PYV_JETPACK"
"${PIPX[@]}" install --dry-run --ignore-installed --target "$W/site-py310" $(plat "$PYV_JETPACK") \
  --report "$W/resolve-py310.json" "$WHL[mqtt,metrics]" > "$W/resolve-py310.log" 2>&1 \
  || { cat "$W/resolve-py310.log"; fail "resolve-py$PYV_JETPACK"; }
"$PYTHON" - "$W/resolve-py310.json" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
print("   " + " ".join(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items
                     if i["metadata"]["name"] in ("onnxruntime", "numpy", "paho-mqtt", "prometheus_client")))
EOF
PASSED=$((PASSED + 1)); done_

# 6. the runs, under emulation
PY=(env PYTHONPATH="$W/site" "$Q" -L "$R" "$R/usr/bin/python3.$(echo "$PYV" | cut -d. -f2)")
B=$W/site/edge_ee/bundles
mkdir -p "$W/out" && cd "$W/out"
run() { local n=$1; shift; step "$n"
        if "${PY[@]}" "$@" > "$n.log" 2>&1; then PASSED=$((PASSED + 1)); done_; else tail -20 "$n.log"; fail "$n"; fi; }
run import   -c 'import platform, onnxruntime, numpy, cv2, paho.mqtt, edge_ee; assert platform.machine() == "aarch64"; print(onnxruntime.__version__, numpy.__version__, cv2.__version__)'
run info     -m edge_ee info
run validate-fashion_mnist -m edge_ee validate "$B/fashion_mnist"
run validate-kws           -m edge_ee validate "$B/kws"
run run-sample -m edge_ee run --source sample --max-frames 50 --power-source estimate --quiet
run run-kws    -m edge_ee run --source sample:kws --max-frames 40 --quiet
echo "   onnxruntime numpy cv2 (aarch64): $(cat import.log)"
grep -h -E '^frames:|^accuracy|keywords detected|precision' run-*.log | sed 's/^/   /' || true
echo "arm64 smoke: OK in $(( $(date +%s) - T_ALL )) s"
echo "arm64-smoke: $PASSED passed, 0 failed"
