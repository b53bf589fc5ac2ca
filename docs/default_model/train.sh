#!/usr/bin/env bash
# The built-in default's whole recipe, as it was run: the synthetic data, stage 1, then four continuations of the
# reconstruction fit, the last of which also fits a window of the full-size frame at every step. The generator has
# its final settings from the first run on: canonical space at the mean shape, colour modulation, the field's own
# high-resolution textures, the sloped neck gate with the depth gate on the expression, and RadianceNet's hidden
# width at 96; every reconstruction fit ends at a moving average of its iterates (recon_ema).
#
#   bash docs/default_model/train.sh [OUT]      # OUT defaults to runs/default
#
# About 2 h 30 min on a 2-core CPU (2 h 27 min of training as measured, with other work beside it for part of it,
# plus the data; the model card gives the times). Stopped at any point, the same command continues: finished runs are
# skipped and a stopped run resumes (--resume) from its last checkpoint (every 250 steps, within the warm-ups too),
# ending as if it had not stopped. The result is OUT/s1e/generator.safetensors: the built-in default.
# There is no stage 2: with field_hr_textures the model's high-resolution textures are its radiance field sampled at
# the fine texels, and super-resolution is not used.
set -euo pipefail
OUT=${1:-runs/default}
# Two threads: the reconstruction fits read images loaded before they start, so no core is needed for a data worker.
# RECIPE_THREADS and RECIPE_SETTINGS (more --set options for every run) let a variant of the recipe reuse this script.
export OMP_NUM_THREADS=${RECIPE_THREADS:-2}
# The generator settings and the fits' moving average (decay 0.998), the same in every run. The depth gate: the
# expression's displacement is 0 behind canonical z = -0.04 and 1 in front of -0.025, where the 3DMM face lies.
# imitation_region_share=0.5: half of the imitation loss's surface points drawn where the image's expression moves
# the face (docs/training/README.md, section 29; the trainer's default, set here so the recipe stays as it was run).
GEN="--set generator.mean_shape_canonical=true --set generator.color_modulation=true \
--set generator.field_hr_textures=true --set generator.expression_gate_slope=0.5 \
--set generator.expression_gate_depth_low=-0.04 --set generator.expression_gate_depth_high=-0.025 \
--set generator.hidden_dim=96 --set recon_ema=0.998 --set imitation_region_share=0.5 ${RECIPE_SETTINGS:-}"
CONTINUE="--set shape_prior_steps=0 --set recon_lr=1e-4 --set data_workers=0"

# train RUN OPTIONS...: skip a finished run, resume a stopped one, else start it with OPTIONS.
train() {
    local run="$OUT/$1"
    shift
    if grep -qs "^done at step" "$run/log.txt"; then
        return
    elif [ -f "$run/state.safetensors" ]; then
        aniportrait train --data "$OUT/data" --out "$run" --resume --quiet
    else
        rm -rf "$run"  # stopped before its first checkpoint: nothing to keep
        aniportrait train --data "$OUT/data" --out "$run" "$@" --quiet
    fi
}

[ -f "$OUT/data/dataset.json" ] || aniportrait data synth "$OUT/data" --n 20000 --res 128 --seed 0 --quiet
# Stage 1: the shape, deformation and reconstruction warm-ups, then one adversarial step (the small preset).
train s1 --config small $GEN
# 2,500 more reconstruction steps at half the first learning rate (this run and the next three were made with
# data_workers=0: the real images of their single adversarial step decoded on the training thread).
train s1b --config small $GEN $CONTINUE \
    --set deform_prior_steps=0 --set recon_steps=2500 --init-from "$OUT/s1"
# Two more continuations, each a short deformation warm-up (500, then 300 steps) and 1,000 reconstruction steps.
train s1c --config small $GEN $CONTINUE \
    --set deform_prior_steps=500 --set recon_steps=1000 --init-from "$OUT/s1b"
train s1d --config small $GEN $CONTINUE \
    --set deform_prior_steps=300 --set recon_steps=1000 --init-from "$OUT/s1c"
# 1,000 more reconstruction steps with a 32x32 window of the full-size (128x128) frame fitted at every step against
# the image at full size (recon_window), no warm-up. It starts from s1d's generator file (its EMA), not from its
# training state.
train s1e --config small $GEN $CONTINUE \
    --set deform_prior_steps=0 --set recon_window=32 --set recon_steps=1000 \
    --init-from "$OUT/s1d/generator.safetensors"
