#!/usr/bin/env bash
# Idempotent setup for qsched on Debian 12: installs the Debian packages the project needs
# (only when something is missing), then configures and builds build/qsched.
#
#   scripts/setup.sh            install + build (Release)
#   scripts/setup.sh --no-build install only
#
# Environment: BUILD_DIR (default: build), JOBS (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build ccache libtorch-dev libopenblas-dev libeigen3-dev nlohmann-json3-dev
      libboost-program-options-dev libgtest-dev googletest libgloo-dev zlib1g-dev
      dataset-fashion-mnist gnuplot-nox)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# libtorch-dev depends on a generic BLAS; make sure OpenBLAS (not the 25x slower reference
# BLAS) is the active alternative.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  target=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas || true)
  if [ -n "$target" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO update-alternatives --set "$alt" "$target" >/dev/null
  fi
done

[ "${1:-}" = "--no-build" ] && exit 0

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
# Ninja for a new build directory (an existing one keeps the generator it was made with).
GEN=()
[ -f "$BUILD_DIR/CMakeCache.txt" ] || GEN=(-G Ninja)
cmake "${GEN[@]}" -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$JOBS"
