#!/usr/bin/env bash
# (The recipe of the default shipped at 6e47cd4, kept for the record; docs/default_model/train.sh is the current one.)
# The built-in default's whole recipe, as it was run: the synthetic data, stage 1, its refinement and two
# continuations, stage 2.
#
#   bash docs/default_model/6e47cd4/train.sh [OUT]      # OUT defaults to runs/default
#
# About 2 h 30 min on a 2-core CPU (the model card gives the measured times). Each run can be stopped and
# continued with `aniportrait train --data OUT/data --out OUT/RUN --resume`. The result is OUT/s2/generator.safetensors.
set -euo pipefail
OUT=${1:-runs/default}
export OMP_NUM_THREADS=1  # one thread for the training process, one core left for its data worker

aniportrait data synth "$OUT/data" --n 20000 --res 128 --seed 0 --quiet
# Stage 1: the shape, deformation and reconstruction warm-ups, then one adversarial step (the small preset).
aniportrait train --data "$OUT/data" --out "$OUT/s1" --config small --quiet
# Stage 1, refined: 1,000 more reconstruction steps at a quarter of the learning rate, from stage 1's state.
aniportrait train --data "$OUT/data" --out "$OUT/s1b" --config small --set shape_prior_steps=0 \
    --set deform_prior_steps=0 --set recon_steps=1000 --set recon_lr=5e-5 --init-from "$OUT/s1" --quiet
# Stage 1, continued: 2,500 more reconstruction steps at half the first learning rate, from the refinement's state
# (this run, the next and stage 2 were made with data_workers=0: the real images of their single adversarial step
# decoded on the training thread).
aniportrait train --data "$OUT/data" --out "$OUT/s1c" --config small --set shape_prior_steps=0 \
    --set deform_prior_steps=0 --set recon_steps=2500 --set recon_lr=1e-4 --set data_workers=0 \
    --init-from "$OUT/s1b" --quiet
# Stage 1, continued again: 2,500 more reconstruction steps at a quarter of the first learning rate.
aniportrait train --data "$OUT/data" --out "$OUT/s1d" --config small --set shape_prior_steps=0 \
    --set deform_prior_steps=0 --set recon_steps=2500 --set recon_lr=5e-5 --set data_workers=0 \
    --init-from "$OUT/s1c" --quiet
# Stage 2: the upsampling warm-up, then one adversarial step.
aniportrait train --data "$OUT/data" --out "$OUT/s2" --config small --set stage=2 --set sr_prior_steps=500 \
    --set data_workers=0 --init-from "$OUT/s1d" --quiet
