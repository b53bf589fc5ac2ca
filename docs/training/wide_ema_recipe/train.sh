#!/usr/bin/env bash
# docs/training section 26: the built-in default's recipe (docs/default_model/train.sh) as it was run with two
# changes: RadianceNet's hidden width 96 instead of 64 and the reconstruction fits ending at a moving average of
# their iterates (recon_ema=0.998), in every run, and two threads instead of one (the fits read preloaded images, so
# both cores step the model).
#
#   bash docs/training/wide_ema_recipe/train.sh [OUT]      # OUT defaults to runs/default
#
# Stopped at any point, the same command continues (finished runs are skipped, a stopped one resumes). The result is
# OUT/s1e/generator.safetensors.
set -euo pipefail
RECIPE_THREADS=2 RECIPE_SETTINGS="--set generator.hidden_dim=96 --set recon_ema=0.998" \
    exec bash "$(dirname "$0")/../../default_model/train.sh" "$@"
