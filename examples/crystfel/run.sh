#!/usr/bin/env bash
# The CrystFEL walk-through of README.md, end to end (all but indexamajig, which is not
# installable here). Usage: examples/crystfel/run.sh [WORKDIR]   (default: a fresh temp dir)
# Environment: PYTHON (default: python3), MODEL (a trained .keras; default: the shipped
# model, else an UNTRAINED stand-in, whose decisions mean nothing), MPI=0 skips the MPI step.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-$(mktemp -d -t sfx-cnn-veto-crystfel.XXXXXX)}
PY=${PYTHON:-python3}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
veto() { "$PY" -m sfx_cnn_veto.cli "$@"; }
# exit status 2 means "some events could not be scored" (kept as hits): expected on real data
ok() { local rc=0; "$@" || rc=$?; if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then echo "failed ($rc): $*" >&2; exit "$rc"; fi; }

mkdir -p "$WORK"; cd "$WORK"
echo "== working in $WORK"

echo "== 1. data: simulated frames (CXI), their .lst and a matching .geom"
if veto simulate --help >/dev/null 2>&1; then
    veto simulate data --runs 90 --frames 60 --size 400x400
else
    echo "(sfx-cnn-veto simulate is not available in this checkout: using examples/crystfel/make_data.py)"
    "$PY" "$HERE/make_data.py" data
fi
LISTS=(data/*.lst); LST=${LISTS[0]}
GEOM=${LST%.lst}.geom
echo "list: $LST ($(wc -l < "$LST") events), geometry: $GEOM"

if [ -n "${MODEL:-}" ]; then
    MODEL_ARGS=(-m "$MODEL")
elif "$PY" -c "import sys; from sfx_cnn_veto.core.model import default_model_path as d; sys.exit(d() is None)"; then
    MODEL_ARGS=()
else
    echo "(no trained model shipped: writing an UNTRAINED stand-in; pass MODEL=your.keras for real decisions)"
    CXI=$(sed -n -E '1{s# //[0-9]+$##;p;q}' "$LST")
    "$PY" "$HERE/make_data.py" standin --frames 1 --size 8 --model model.keras --calibrate "$CXI" >/dev/null
    MODEL_ARGS=(-m model.keras)
fi

echo "== 2. veto the list: hits.lst for indexamajig, plus misses, errors and per-event scores"
ok veto filter-lst "$LST" "${MODEL_ARGS[@]}" -o hits.lst --misses misses.lst --errors errors.lst \
    --scores scores.csv --keep-misses-fraction 0.05 --batch-size 16
head -n 3 hits.lst
test "$(($(wc -l < misses.lst) + $(wc -l < errors.lst) + $(grep -c ',hit,' scores.csv || true)))" \
     -eq "$(($(wc -l < scores.csv) - 1))"

if [ "${MPI:-1}" != 0 ] && command -v mpirun >/dev/null && "$PY" -c "import mpi4py" 2>/dev/null; then
    echo "== 2b. the same on 2 MPI ranks: identical bytes"
    ok mpirun --allow-run-as-root --oversubscribe -n 2 "$PY" -m sfx_cnn_veto.cli filter-lst "$LST" \
        "${MODEL_ARGS[@]}" -o hits_mpi.lst --scores scores_mpi.csv --keep-misses-fraction 0.05 --batch-size 16
    cmp hits.lst hits_mpi.lst && cmp scores.csv scores_mpi.csv && echo "MPI output identical to serial"
fi

TRUTH=${LST%.lst}.truth.csv
if [ -f "$TRUTH" ]; then
    echo "== 2c. against the simulation's truth: how many crystal frames does hits.lst keep?"
    "$PY" - "$TRUTH" <<'PYEOF'
import csv, sys
truth = {(r["file"], r["event"]): r["crystal"] == "1" for r in csv.DictReader(open(sys.argv[1]))}
listed = {tuple(l.rstrip("\n").rsplit(" ", 1)) for l in open("hits.lst")}
crystals = [k for k, c in truth.items() if c]
kept = sum(1 for k in crystals if k in listed)
print(f"hits.lst keeps {kept} of {len(crystals)} crystal frames and {len(listed)} of {len(truth)} frames")
PYEOF
fi

INDEX_ARGS=(-i hits.lst -g "$GEOM" -o hits.stream -j "$(nproc)"
            --peaks=peakfinder8 --min-snr=5 --threshold=100 --indexing=xgandalf,mosflm --int-radius=3,4,5)
INDEXAMAJIG=${INDEXAMAJIG:-$(command -v indexamajig || true)}
rm -f hits.stream
if [ -n "$INDEXAMAJIG" ]; then
    echo "== 3. index the hits: $INDEXAMAJIG ${INDEX_ARGS[*]}"
    "$INDEXAMAJIG" "${INDEX_ARGS[@]}"
else
    echo "== 3. the indexamajig command you would run now (CrystFEL is not installed here; INDEXAMAJIG=path runs one):"
    echo "   indexamajig ${INDEX_ARGS[*]}"
fi

echo "== 4. tag a stream (indexamajig's, else one written in CrystFEL's format 2.3 for the demo) and split it"
[ -s hits.stream ] || "$PY" - "$GEOM" <<'PYEOF'
import sys
from sfx_cnn_veto.io.stream import format_chunk, format_preamble
lines = [l.rstrip("\n") for l in open("hits.lst")]
with open("hits.stream", "w") as out:
    out.write(format_preamble(open(sys.argv[1]).read(), command="indexamajig -i hits.lst -o hits.stream"))
    for serial, line in enumerate(reversed(lines), start=1):   # -j N: not in list order
        path, _, event = line.rpartition(" ")
        out.write(format_chunk(path, event, serial, peaks=[(10.0, 12.0, 1.2, 300.0, "p0")]))
PYEOF
ok veto tag-stream hits.stream -o tagged.stream --hits cnn_hits.stream --misses cnn_misses.stream --scores scores.csv
grep -m 2 '^cnn_hit' tagged.stream

echo "== 5. tags beside the data (sidecar HDF5 mirroring CXI: /entry_1/result_1/cnnHitScore, cnnHit)"
ok veto tag-cxi "$LST" --scores scores.csv --output-dir sidecars
ls sidecars

echo "== 6. conversions: an OM hit list to an indexamajig list; the hits back to a scores CSV"
sed -E 's#^(.*) //([0-9]+)$#\1 // 0000\2#' hits.lst > om_hits.txt
veto convert hitlist om_hits.txt -o from_om.lst
cmp <(sed -E 's#//0*([0-9])#//\1#' from_om.lst) hits.lst && echo "OM list converted back to hits.lst"
ok veto convert lst-scores hits.lst --scores scores.csv -o hits_scores.csv
echo "== done: all outputs in $WORK"
