#!/usr/bin/env bash
# The demo: install, write the toy dataset, train the quickstart model, separate a held-out song, and score
# the test songs with museval next to the mixture-as-estimate baseline. Everything lands in demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TF_CPP_MIN_LOG_LEVEL=2
wave-unet-toy-data --output_dir demo/toy --num_tracks 16 --seconds 12 --seed 0
python train.py --flagfile=flags/quickstart.cfg
song="$(find demo/toy/test -name mixture.wav | sort | head -n 1)"
wave-unet-separate --model demo/quickstart --output_dir demo/separated "$song"
wave-unet-evaluate --model demo/quickstart --musdb_root demo/toy --is_wav --subset test \
  --output_dir demo/evaluation --baseline
