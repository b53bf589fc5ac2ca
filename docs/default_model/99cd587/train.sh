#!/usr/bin/env bash
# The recipe of the built-in default shipped at 99cd587, as it was run (the default since then: ../train.sh): the
# synthetic data, stage 1, a continuation with colour modulation, a continuation with the sloped neck gate and the
# field's own high-resolution textures, one with the depth gate that keeps the expression off the back and sides of
# the head, and a last one that also fits a window of the full-size frame at every step.
#
#   bash docs/default_model/99cd587/train.sh [OUT]      # OUT defaults to runs/default
#
# About 3 hours on a 2-core CPU (the logs in this folder give the times). Each run is almost all warm-up, which
# saves no state on the way: a run stopped part-way is started again (delete its folder, then run its line and the
# ones after it). The result is OUT/s1e/generator.safetensors.
# There is no stage 2: with field_hr_textures the model's high-resolution textures are its radiance field sampled at
# the fine texels, and super-resolution is not used.
set -euo pipefail
OUT=${1:-runs/default}
export OMP_NUM_THREADS=1  # one thread for the training process, one core left for its data worker
MEAN_SHAPE="--set generator.mean_shape_canonical=true"
MODULATION="--set generator.color_modulation=true"
CONTINUE="--set shape_prior_steps=0 --set recon_lr=1e-4 --set data_workers=0"

aniportrait data synth "$OUT/data" --n 20000 --res 128 --seed 0 --quiet
# Stage 1 in the mean-shape canonical space: the shape, deformation and reconstruction warm-ups, then one
# adversarial step (the small preset).
aniportrait train --data "$OUT/data" --out "$OUT/s1" --config small $MEAN_SHAPE --quiet
# Continued with colour modulation: 2,500 more reconstruction steps at half the first learning rate (this run and
# the next were made with data_workers=0: the real images of their single adversarial step decoded on the
# training thread).
aniportrait train --data "$OUT/data" --out "$OUT/s1b" --config small $MEAN_SHAPE $MODULATION $CONTINUE \
    --set deform_prior_steps=0 --set recon_steps=2500 --init-from "$OUT/s1" --quiet
# Continued with the sloped neck gate and field textures: the deformation warm-up again (500 steps), then 1,000
# more reconstruction steps.
aniportrait train --data "$OUT/data" --out "$OUT/s1c" --config small $MEAN_SHAPE $MODULATION $CONTINUE \
    --set generator.expression_gate_slope=0.5 --set generator.field_hr_textures=true \
    --set deform_prior_steps=500 --set recon_steps=1000 --init-from "$OUT/s1b" --quiet
# Continued with the depth gate (the expression's displacement 0 behind canonical z = -0.04, 1 in front of -0.025,
# where the 3DMM face lies): the deformation warm-up again (300 steps), then 1,000 more reconstruction steps.
aniportrait train --data "$OUT/data" --out "$OUT/s1d" --config small $MEAN_SHAPE $MODULATION $CONTINUE \
    --set generator.expression_gate_slope=0.5 --set generator.field_hr_textures=true \
    --set generator.expression_gate_depth_low=-0.04 --set generator.expression_gate_depth_high=-0.025 \
    --set deform_prior_steps=300 --set recon_steps=1000 --init-from "$OUT/s1c" --quiet
# Continued with a 32x32 window of the full-size (128x128) frame fitted at every step against the image at full size
# (recon_window): 1,000 more reconstruction steps, no warm-up. It starts from s1d's generator file (the EMA the
# previous default shipped as), not from its training state.
aniportrait train --data "$OUT/data" --out "$OUT/s1e" --config small $MEAN_SHAPE $MODULATION $CONTINUE \
    --set generator.expression_gate_slope=0.5 --set generator.field_hr_textures=true \
    --set generator.expression_gate_depth_low=-0.04 --set generator.expression_gate_depth_high=-0.025 \
    --set deform_prior_steps=0 --set recon_window=32 --set recon_steps=1000 \
    --init-from "$OUT/s1d/generator.safetensors" --quiet
