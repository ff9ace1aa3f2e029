#!/usr/bin/env bash
# The robustness and transfer study of docs/results.md, end to end.
#   examples/robustness.sh [WORKDIR]        (default ./robustness; ~30 min on 2 busy cores)
# Steps already done (files present) are skipped, so it can be resumed.
set -euo pipefail
W=${1:-robustness}
mkdir -p "$W"
cd "$W"
V="sfx-cnn-veto"
TRAIN=run90,run91,run92,run93
# the robust default's training recipe (the paper's SGD with momentum, a larger step) and the default
# augmentation (shifts, flips, gain, offsets, hot pixels, extra background, weak-hit composites);
# docs/results.md's tables before "weak-hit composites" used
#   AUG="shift=8,flips=1,gain=0.5:2.5,offset=-5:5,hot_pixels=150,background=0:4,weaken=0.08:1,p_raw=0.75"
AUG="default"

# 1. the default simulated experiment (10 runs) and a second one (lysozyme-like)
[ -f strep/run100.lst ] || $V simulate strep
[ -f lyso/lyso4.lst ] || $V simulate lyso --config lysozyme

# 2. labels from OM's peakfinder8 on the full frames (paper rule: <2 miss, >10 hit)
[ -f strep_labels.csv ] || $V label strep/run9?.lst strep/run100.lst -o strep_labels.csv
[ -f lyso_labels.csv ] || $V label lyso/lyso?.lst -o lyso_labels.csv

# 3. the default pipeline (veto + despeckle + augmentation) and the paper's (Table I + standardize, no augmentation)
[ -f veto.keras ] || $V train --labels strep_labels.csv --train-runs $TRAIN -o veto.keras \
    --lr 0.01 --epochs 40 --augment "$AUG"
[ -f paper.keras ] || $V train --labels strep_labels.csv --train-runs $TRAIN -o paper.keras \
    --arch paper --augment none --epochs 25

# 4. Table II for both, side by side (compare.md), with the naive intensity cut
$V evaluate -m veto.keras --labels strep_labels.csv --report report_strep --compare-model paper.keras

# 5. cross-experiment transfer: the streptavidin model on lysozyme runs, as is ...
$V evaluate -m veto.keras --labels lyso_labels.csv --report report_lyso_zero --intensity-runs lyso1,lyso2
# ... fine-tuned on 250 labelled lysozyme frames of one run, and trained from scratch on the same frames
[ -f lyso_ft.keras ] || $V train --labels lyso_labels.csv --train-runs lyso1 --max-per-run 250 \
    --init-model veto.keras -o lyso_ft.keras --lr 0.01 --epochs 10 --augment "$AUG"
[ -f lyso_scratch.keras ] || $V train --labels lyso_labels.csv --train-runs lyso1 --max-per-run 250 \
    -o lyso_scratch.keras --lr 0.01 --epochs 10 --augment "$AUG"
$V evaluate -m lyso_ft.keras --labels lyso_labels.csv --report report_lyso_ft --intensity-runs lyso1,lyso2 \
    --compare-model veto.keras --compare-model lyso_scratch.keras
