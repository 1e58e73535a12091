#!/usr/bin/env bash
# Installs wave-unet-tf and everything it needs: ffmpeg (apt, where possible) and the Python package.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg) >/dev/null
  elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg) >/dev/null
  else
    echo "wave-unet-tf needs ffmpeg and ffprobe on PATH (musdb reads every file through them): install ffmpeg, then run this again" >&2
    exit 1
  fi
fi
python3 -m pip install -q --disable-pip-version-check -e ".[${1:-test}]"
