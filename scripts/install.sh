#!/usr/bin/env bash
# Installs wave-unet-tf and everything it needs: ffmpeg (apt, where possible) and the Python package.
# With the test extra (the default) also Chromium where apt can install it: the web page's browser tests use
# it and are skipped, saying so, without it. LiteRT.js (npm), which `wave-unet-export --web` copies into the
# in-browser site, is installed beside the package where npm is found.
set -euo pipefail
cd "$(dirname "$0")/.."
apt_install() {
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
  elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
  else
    return 1
  fi
}
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  if ! apt_install ffmpeg; then
    echo "wave-unet-tf needs ffmpeg and ffprobe on PATH (musdb reads every file through it): install ffmpeg, then run this again" >&2
    exit 1
  fi
fi
if [ "${1:-test}" = test ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  apt_install chromium 2>/dev/null || echo "chromium could not be installed with apt: the web page's browser tests will be skipped" >&2
fi
python3 -m pip install -q --disable-pip-version-check -e ".[${1:-test}]"
if command -v npm >/dev/null || apt_install npm 2>/dev/null; then
  npm ci --prefix wave_unet_tf/web --no-audit --no-fund --silent \
    || echo "npm could not install LiteRT.js: wave-unet-export --web and the browser tests need it (npm ci --prefix wave_unet_tf/web)" >&2
else
  echo "npm not found: wave-unet-export --web and the browser tests need LiteRT.js (npm ci --prefix wave_unet_tf/web)" >&2
fi
