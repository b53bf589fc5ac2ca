#!/usr/bin/env bash
# A fresh `small` model, with the default's generator settings, fitted to the first N images of DATA for 800
# reconstruction steps with a 64x64 face view, ending at its last iterate (docs/training/README.md, section 34): how
# much of the data the field can hold when it has few images to learn. SCALE: RadianceNet's input scale; MORE: further
# --set options. One thread (two of these ran side by side).
#
#   bash docs/training/texel_centres/probe.sh DATA OUT N SCALE [MORE...]
set -euo pipefail
DATA=$1 OUT=$2 N=$3 SCALE=$4
shift 4
export OMP_NUM_THREADS=1
GEN="--set generator.mean_shape_canonical=true --set generator.color_modulation=true \
--set generator.field_hr_textures=true --set generator.expression_gate_slope=0.5 \
--set generator.expression_gate_depth_low=-0.04 --set generator.expression_gate_depth_high=-0.025 \
--set generator.hidden_dim=96 --set imitation_region_share=0.5"
aniportrait train --data "$DATA" --out "$OUT" --config small $GEN --set recon_ema=0 \
    --set recon_images="$N" --set recon_steps=800 --set face_size=64 --set data_workers=0 \
    --set generator.radiance_input_scale="$SCALE" "$@" --quiet
