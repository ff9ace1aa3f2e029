#!/bin/sh
# The demo's training step (sfx_cnn_veto/demo.py, step 3/8: the default network on the demo's data), timed
# with two checkouts one after the other, and whether they trained the same model bit for bit.
#
#   examples/speed/demo_train_ab.sh DEMO_OUTPUT BEFORE_CHECKOUT AFTER_CHECKOUT [PYTHON]
#
# DEMO_OUTPUT holds labels.csv and data/ (as `sfx-cnn-veto demo` leaves them, or `simulate DIR/data --seed 1
# --frames 300` and `label DIR/data/*.lst -o DIR/labels.csv`); the models go to DEMO_OUTPUT/ab_*.keras.
set -e
out=$(cd "$1" && pwd); before=$(cd "$2" && pwd); after=$(cd "$3" && pwd); py=${4:-python}
export SFX_CNN_VETO_PROGRESS=0
for which in before after; do
  if [ $which = before ]; then root=$before; else root=$after; fi
  echo "== $which ($root) $(date -u +%T) load average $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$out" && /usr/bin/time -f "$which: %e s wall, %U s user, %S s sys" env PYTHONPATH="$root:$root/plugins" \
    "$py" -c "from sfx_cnn_veto.cli import main; raise SystemExit(main())" train --labels labels.csv \
    --train-runs run90,run91,run92,run93 --seed 1 -o ab_$which.keras --epochs 40 --lr 0.01 2>&1 | tail -1)
done
PYTHONPATH="$after:$after/plugins" "$py" - "$out" <<'PY'
import sys
import numpy as np
from sfx_cnn_veto.core.model import VetoModel
a, b = (VetoModel.load(f"{sys.argv[1]}/ab_{w}.keras") for w in ("before", "after"))
same = all(np.array_equal(x, y) for x, y in zip(a.keras_model.get_weights(), b.keras_model.get_weights()))
print(f"same weights bit for bit: {same}; thresholds {a.metadata.threshold} {b.metadata.threshold}")
PY
