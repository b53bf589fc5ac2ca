#!/usr/bin/env bash
# The built-in default continued by STEPS (1,000 unless given) reconstruction steps with the full-size window on
# RECON_IMAGES rows of DATA (docs/training/README.md, section 33): the recipe's last run's settings (train.sh),
# started from the default; MORE: further --set options. One thread (two of these ran side by side).
#
#   bash docs/training/eye_probe/fit.sh DATA OUT RECON_IMAGES [STEPS [MORE...]]
set -euo pipefail
DATA=$1 OUT=$2 IMAGES=$3 STEPS=${4:-1000}
shift $(($# < 4 ? $# : 4))
export OMP_NUM_THREADS=1
GEN="--set generator.mean_shape_canonical=true --set generator.color_modulation=true \
--set generator.field_hr_textures=true --set generator.expression_gate_slope=0.5 \
--set generator.expression_gate_depth_low=-0.04 --set generator.expression_gate_depth_high=-0.025 \
--set generator.hidden_dim=96 --set recon_ema=0.998 --set imitation_region_share=0.5"
CONTINUE="--set shape_prior_steps=0 --set recon_lr=1e-4 --set data_workers=0"
aniportrait train --data "$DATA" --out "$OUT" --config small $GEN $CONTINUE \
    --set deform_prior_steps=0 --set recon_window=32 --set recon_steps="$STEPS" --set recon_images="$IMAGES" \
    "$@" --init-from "$(python -c 'from aniportrait.pretrained import builtin_checkpoint_path as p; print(p())')" --quiet
