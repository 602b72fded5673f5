#!/usr/bin/env bash
# Install the Debian packages hyblua needs, only those missing (used by `make run` and .ci/run).
set -euo pipefail
pkgs=(build-essential pkg-config liblua5.4-dev libopenblas-dev libyaml-dev libcjson-dev libedit-dev perl
      openmpi-bin libopenmpi-dev   # Open MPI: make MPI=1 and tests/test_mpi.sh (docs/distributed.md)
      librsvg2-bin)                # rsvg-convert: hb.plot's PNG output, rendered in tests/test_recipes.lua
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
