#!/usr/bin/env bash
# The continuation of docs/training/README.md, sections 29 and 31: the built-in default continued by a deformation
# warm-up (DEFORM_STEPS, 1,500 unless given; 0 skips it) and 1,000 reconstruction steps with the full-size window,
# the imitation loss's region share at SHARE, then its held-out evaluation (256 rows). One thread (two of these ran
# side by side each time).
#
#   bash docs/training/region_share/continuation.sh SHARE DATA HELDOUT OUT [DEFORM_STEPS]
set -euo pipefail
SHARE=$1 DATA=$2 HELDOUT=$3 OUT=$4 DEFORM_STEPS=${5:-1500}
export OMP_NUM_THREADS=1
GEN="--set generator.mean_shape_canonical=true --set generator.color_modulation=true \
--set generator.field_hr_textures=true --set generator.expression_gate_slope=0.5 \
--set generator.expression_gate_depth_low=-0.04 --set generator.expression_gate_depth_high=-0.025 \
--set generator.hidden_dim=96 --set recon_ema=0.998"
CONTINUE="--set shape_prior_steps=0 --set recon_lr=1e-4 --set data_workers=0"
aniportrait train --data "$DATA" --out "$OUT" --config small $GEN $CONTINUE \
    --set deform_prior_steps="$DEFORM_STEPS" --set recon_window=32 --set recon_steps=1000 \
    --set imitation_region_share="$SHARE" \
    --init-from "$(python -c 'from aniportrait.pretrained import builtin_checkpoint_path as p; print(p())')" --quiet
aniportrait eval --checkpoint "$OUT/generator.safetensors" --data "$HELDOUT" --metrics control,fidelity --num 256 \
    --json "$OUT/evaluation.json"
