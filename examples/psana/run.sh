#!/usr/bin/env bash
# psana2 demo: write an xtc2 run with psana's own writer, veto it serially and under
# `mpirun -n 4`, then read back only the hits. Exits non-zero on any failure.
#   PYTHON=/path/to/python MODEL=model.keras NPROC=4 examples/psana/run.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PYTHON="${PYTHON:-python}"
NPROC="${NPROC:-4}"
work="${1:-$(mktemp -d)}"
export PYTHONPATH="$root:$root/plugins${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=3
model_args=()
[ -n "${MODEL:-}" ] && model_args=(--model "$MODEL")
mpirun_cmd=(mpirun -n "$NPROC")
[ "$(id -u)" = 0 ] && mpirun_cmd=(mpirun --allow-run-as-root -n "$NPROC")
mpirun_cmd+=(--oversubscribe)
script="$here/veto_xtc2.py"

echo "== 1. write the run (psana.dgramedit + smdwriter) into $work/run"
"$PYTHON" "$script" write --dir "$work/run" --frames 40

echo "== 2. veto serially"
"$PYTHON" "$script" veto --dir "$work/run" "${model_args[@]}" --table "$work/serial.h5" --hits "$work/serial-hits.npy"
"$PYTHON" "$script" second --dir "$work/run" --table "$work/serial-second.h5" --hits "$work/serial-hits.npy"

echo "== 3. veto under ${mpirun_cmd[*]}"
PS_SRV_NODES=1 "${mpirun_cmd[@]}" "$PYTHON" "$script" veto --dir "$work/run" "${model_args[@]}" \
    --table "$work/mpi.h5" --hits "$work/mpi-hits.npy"
PS_SRV_NODES=1 "${mpirun_cmd[@]}" "$PYTHON" "$script" second --dir "$work/run" \
    --table "$work/mpi-second.h5" --hits "$work/mpi-hits.npy"

echo "== 4. check: every event once in both tables, same decisions, second passes read exactly the hits"
"$PYTHON" - "$work" <<'PY'
import sys, h5py, numpy as np
from sfx_cnn_veto_psana import read_table, read_hits
work = sys.argv[1]
s, m = read_table(f"{work}/serial.h5"), read_table(f"{work}/mpi.h5")
n = 40
for name, t in (("serial", s), ("mpi", m)):
    ts = t["timestamp"]
    assert ts.size == n and np.unique(ts).size == n, f"{name}: {ts.size} rows, {np.unique(ts).size} distinct, expected {n}"
assert np.array_equal(s["timestamp"], m["timestamp"]) and np.array_equal(s["is_hit"], m["is_hit"]), "serial and MPI decisions differ"
assert np.allclose(s["score"], m["score"], rtol=1e-5, atol=1e-6, equal_nan=True), "serial and MPI scores differ"
for name in ("serial", "mpi"):
    hits = read_hits(f"{work}/{name}-hits.npy")
    with h5py.File(f"{work}/{name}-second.h5") as f:
        read = np.sort(f["timestamp"][:]) if "timestamp" in f else np.empty(0, np.uint64)
    assert np.array_equal(read, hits), f"{name}: second pass read {read.size} events, hit list has {hits.size}"
print(f"OK: {n} events scored once each, serial == MPI, {int(s['is_hit'].sum())} hits, second passes read only them")
PY
