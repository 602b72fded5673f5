#!/bin/sh
# tests/test_mpi.sh — data-parallel training over MPI (docs/distributed.md), TAP. Needs mpirun and the
# Open MPI development files (Debian: openmpi-bin libopenmpi-dev; .ci/deps.sh installs them); skips
# without them. Builds ./hyblua-mpi (make MPI=1) and runs tests/scripts/mpi_check.lua under ./hyblua,
# which drives `mpirun -np 2|3|4 ./hyblua-mpi` against a single-process reference.
cd "$(dirname "$0")/.." || exit 1
if ! command -v mpirun >/dev/null 2>&1; then echo "1..0 # SKIP no mpirun"; exit 0; fi
if ! pkg-config --exists ompi-c 2>/dev/null; then echo "1..0 # SKIP no Open MPI development files (libopenmpi-dev)"; exit 0; fi
if ! make -s MPI=1 hyblua-mpi >&2; then echo "1..1"; echo "not ok 1 - make MPI=1 builds ./hyblua-mpi"; exit 1; fi
exec ./hyblua tests/scripts/mpi_check.lua
