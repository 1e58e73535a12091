"""Hostile audio files: damaged or lying files that every reader of the project must refuse cleanly.

    python tests/hostile_audio.py DIR      # writes them into DIR and lists them

Each file is built from a short valid recording (or from nothing) and then broken the way real files break:
cut off by a full disk or an interrupted copy, a header that lies about its size, channels or rate, bytes
that are not audio at all. Everything depends on nothing but the code (fixed seed), so a failure reproduces.
"""

import io
import os
import struct
import sys

import numpy as np
import soundfile

RATE = 44100
SECONDS = 0.5


def _valid_recording(channels=2):
  t = np.arange(int(RATE * SECONDS)) / RATE
  tone = 0.3 * np.sin(2 * np.pi * 440 * t)
  return np.repeat(tone[:, None], channels, axis=1).astype(np.float32)


def _encoded(fmt, subtype, channels=2):
  buffer = io.BytesIO()
  soundfile.write(buffer, _valid_recording(channels), RATE, format=fmt, subtype=subtype)
  return buffer.getvalue()


def _wav(**fields):
  """A 16-bit PCM WAV with the given header fields overridden (channels, rate, data_size, riff_size) and
  ``data`` (default: what a valid file of that shape holds)."""
  pcm = _encoded("WAV", "PCM_16")
  data = fields.get("data", pcm[44:])
  channels, rate = fields.get("channels", 2), fields.get("rate", RATE)
  block_align = channels * 2
  fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align & 0xFFFF, 16)
  data_size = fields.get("data_size", len(data))
  riff_size = fields.get("riff_size", 4 + 8 + len(fmt) + 8 + len(data))
  return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
          + b"data" + struct.pack("<I", data_size) + data)


def _flac_with_total_samples(total):
  """A valid FLAC whose STREAMINFO declares ``total`` samples (36 bits) instead of the real count."""
  flac = bytearray(_encoded("FLAC", "PCM_16"))
  assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # STREAMINFO is the first metadata block
  info = 8  # after "fLaC" and the 4-byte block header
  # Bytes 13..17 of STREAMINFO: 4 bits of bits-per-sample, then the 36-bit total sample count.
  packed = int.from_bytes(flac[info + 13:info + 18], "big")
  packed = (packed & ~((1 << 36) - 1)) | (total & ((1 << 36) - 1))
  flac[info + 13:info + 18] = packed.to_bytes(5, "big")
  return bytes(flac)


def _random_bytes(size, seed):
  return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def hostile_files():
  """``{file name: bytes}``: every hostile file, named after what is wrong with it."""
  wav = _encoded("WAV", "PCM_16")
  flac = _encoded("FLAC", "PCM_16")
  return {
      # Cut off mid-file (an interrupted copy, a full disk): the header still declares the whole length.
      "truncated.wav": wav[:len(wav) // 2 + 1],  # also mid-sample
      "truncated.flac": flac[:len(flac) // 2],
      # Complete files whose header declares far more audio than they hold.
      "more_frames_than_data.wav": _wav(data_size=len(wav) * 50, riff_size=len(wav) * 50),
      "more_frames_than_data.flac": _flac_with_total_samples(1 << 28),  # 2 GB of float32 if believed
      "huge_data_size.wav": _wav(data=b"\x01\x02\x03\x04\x05\x06", data_size=0xFFFFFFF0, riff_size=0xFFFFFFFF),
      # Headers declaring what no model can take, or no audio at all.
      "seven_channels.wav": _wav(channels=7),
      "65535_channels.wav": _wav(channels=65535),
      "zero_rate.wav": _wav(rate=0),
      "rate_4e9.wav": _wav(rate=4_000_000_000),
      "rate_1.wav": _wav(rate=1),
      # Not audio at all, under audio names.
      "random_bytes.wav": _random_bytes(20000, 1),
      "random_bytes.flac": _random_bytes(20000, 2),
      "random_bytes.mp3": _random_bytes(20000, 3),
      "empty.wav": b"",
  }


HOSTILE_NAMES = tuple(hostile_files())


def write_hostile_files(folder):
  """Writes every hostile file into ``folder`` (created); returns ``{file name: path}``."""
  os.makedirs(folder, exist_ok=True)
  paths = {}
  for name, content in hostile_files().items():
    paths[name] = os.path.join(folder, name)
    with open(paths[name], "wb") as f:
      f.write(content)
  return paths


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit("usage: python tests/hostile_audio.py DIR")
  for path in write_hostile_files(sys.argv[1]).values():
    print(path)
