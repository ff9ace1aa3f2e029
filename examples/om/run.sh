#!/usr/bin/env bash
# Demo: simulate frames, run the real OM monitor under MPI with the CNN veto, print the veto summary.
#
#   examples/om/run.sh                  # veto mode, demo model trained on the spot if none is given
#   MODE=tag examples/om/run.sh         # tag mode: CNN and peakfinder8 both run, agreement reported
#   MODEL=/path/model.keras examples/om/run.sh
#
# Environment: PYTHON (default: python3 on PATH), MODEL, MODE (veto|tag|off), NP (MPI ranks, default 3).
# Writes everything under examples/om/run/ (ignored by git). Exits 0 only if OM processed every frame.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
PYTHON="${PYTHON:-python3}"
MODE="${MODE:-veto}"
NP="${NP:-3}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
# From a source checkout (not pip-installed) the packages come from the repository.
repo="$(cd "$here/../.." && pwd)"
export PYTHONPATH="$repo:$repo/plugins${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p run

echo "== 1/3 simulated frames (4 files x 10 frames, 700x700, entry/data/data; sfx_cnn_veto.simulate)"
"$PYTHON" -m sfx_cnn_veto_om.example_data data run/data --files 4 --frames 10 --seed 0

echo "== 2/3 model"
if [[ -z "${MODEL:-}" ]]; then
  MODEL="$("$PYTHON" -c 'from sfx_cnn_veto.core.model import default_model_path as d; print(d() or "")')"
fi
if [[ -z "$MODEL" ]]; then
  MODEL=run/demo-model.keras
  if [[ ! -f "$MODEL" ]]; then
    echo "no model given and none installed: training the tiny demo model (200 simulated frames, 20-40 s)"
    "$PYTHON" -m sfx_cnn_veto_om.example_data model "$MODEL"
  fi
fi
echo "model: $MODEL"
# The example config, with this run's model and mode.
sed -e "s#^  model: .*#  model: $MODEL#" -e "s#^  mode: .*#  mode: $MODE#" \
    -e "s#^  decisions_file: .*#  decisions_file: run/decisions.csv#" monitor.yaml > run/monitor.yaml

echo "== 3/3 OM monitor: mpirun -n $NP sfx-om-monitor -c run/monitor.yaml files.lst"
if command -v sfx-om-monitor >/dev/null 2>&1; then launcher=(sfx-om-monitor); else launcher=("$PYTHON" -m sfx_cnn_veto_om); fi
mpi_flags=()
if mpirun --version 2>&1 | grep -qi "open mpi"; then mpi_flags=(--allow-run-as-root --oversubscribe); fi
set +e
timeout 600 mpirun "${mpi_flags[@]}" -n "$NP" "${launcher[@]}" -c run/monitor.yaml files.lst 2>&1 \
  | grep -v -e "absl::InitializeLog" -e "oneDNN custom operations" | tee run/monitor.log
status=${PIPESTATUS[0]}
set -e
frames=$(( $(wc -l < files.lst) * 10 ))
echo
echo "== veto summary"
grep -E "cnn_veto (final|rank)" run/monitor.log || true
echo "per-event decisions: examples/om/run/decisions.csv; full log: examples/om/run/monitor.log"
if [[ $status -ne 0 ]]; then echo "run.sh: the monitor exited with status $status" >&2; exit "$status"; fi
if ! grep -q "OM has processed $frames events in total." run/monitor.log; then
  echo "run.sh: OM did not report processing all $frames frames" >&2; exit 1
fi
grep -q "cnn_veto final: mode=$MODE frames=$frames" run/monitor.log || { echo "run.sh: no final veto summary" >&2; exit 1; }
