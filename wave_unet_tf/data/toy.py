"""A small synthetic dataset in MUSDB18-HQ layout, with sources a small model can learn to tell apart.

Each song has a tempo, a key and a chord progression; its four stems are:

- vocals: a pitched melody (200-600 Hz) with vibrato, note glides and vowel formants, in the centre;
- drums: kick (falling sine), snare (noise burst) and hi-hat (high-passed noise) on a beat;
- bass: low notes (40-110 Hz) on the chord roots, a few harmonics;
- other: sustained chord pads, detuned left and right.

Files are float32 WAV, so ``mixture.wav`` is exactly the sum of the stems. Everything depends on the seed only.
"""

import os
from typing import List, Optional

import numpy as np

from wave_unet_tf import audio

SAMPLE_RATE = 44100
STEMS = ("vocals", "drums", "bass", "other")
SUBSETS = ("train", "test")
_VOWEL_FORMANTS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240],
                            [530, 1840, 2480], [570, 840, 2410]], np.float32)  # a, i, u, e, o (Hz)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 4), (0, 4, 5, 3), (5, 3, 0, 4))  # scale degrees of chord roots


def write_toy_dataset(output_dir: str, num_tracks: int = 8, seconds: float = 10.0, seed: int = 0,
                      num_test_tracks: Optional[int] = None, sample_rate: int = SAMPLE_RATE) -> List[str]:
  """Writes ``<output_dir>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav`` (stereo, float32).

  Args:
    output_dir: Created if missing; existing toy tracks of the same names are overwritten.
    num_tracks: Songs in ``train``.
    seconds: Length of every song.
    seed: Same seed, same files.
    num_test_tracks: Songs in ``test``; default a quarter of ``num_tracks``, at least one.
    sample_rate: 44100 as MUSDB18.

  Returns:
    The track folders written.
  """
  if num_tracks < 1:
    raise ValueError(f"num_tracks={num_tracks}: must be at least 1")
  if not seconds > 0:
    raise ValueError(f"seconds={seconds}: must be positive")
  num_test_tracks = max(1, num_tracks // 4) if num_test_tracks is None else int(num_test_tracks)
  folders = []
  for subset_index, (subset, count) in enumerate(zip(SUBSETS, (num_tracks, num_test_tracks))):
    for index in range(count):
      rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, subset_index, index])
      stems = synthesize_song(rng, int(round(seconds * sample_rate)), sample_rate)
      folder = os.path.join(output_dir, subset, f"Toy {subset} {index + 1:03d} - Seed {seed}")
      os.makedirs(folder, exist_ok=True)
      mixture = np.zeros_like(stems[STEMS[0]])
      for name in STEMS:
        mixture += stems[name]
        audio.save(os.path.join(folder, name + ".wav"), stems[name], sample_rate)
      audio.save(os.path.join(folder, "mixture.wav"), mixture, sample_rate)
      folders.append(folder)
  return folders


def synthesize_song(rng: np.random.Generator, frames: int, sample_rate: int = SAMPLE_RATE) -> dict:
  """``{stem: float32 [frames, 2]}`` for one random song; the stems' sum stays within [-1, 1]."""
  beat = sample_rate * 60.0 / rng.uniform(90, 140)
  key = rng.integers(0, 12)
  progression = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
  bar = 4 * beat
  num_bars = int(np.ceil(frames / bar))
  chord_roots = [key + _MAJOR[progression[b % len(progression)]] for b in range(num_bars)]
  stems = {
      "vocals": _pan(_voice(rng, frames, beat, key, sample_rate), 0.0) * 0.22,
      "drums": _drums(rng, frames, beat, sample_rate) * 0.3,
      "bass": _pan(_bass(frames, bar, chord_roots, sample_rate), 0.0) * 0.25,
      "other": _pads(rng, frames, bar, chord_roots, sample_rate) * 0.12,
  }
  # float32 as written, so the mixture summed here is exactly the sum of the files.
  return {name: np.asarray(x, np.float32) for name, x in stems.items()}


def _hz(semitone_above_c0):
  return 16.3516 * 2.0 ** (np.asarray(semitone_above_c0, np.float64) / 12.0)


def _pan(mono, position):
  """Equal-power pan, ``position`` in [-1, 1]: ``[frames]`` -> float32 ``[frames, 2]``."""
  angle = (position + 1) * np.pi / 4
  return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1) * np.sqrt(2)


def _note_envelope(frames, onsets, lengths, attack, release, sample_rate):
  """Sum of attack/sustain/release envelopes, one per note; ``[frames]``."""
  env = np.zeros(frames)
  for onset, length in zip(onsets, lengths):
    start, end = int(onset), min(int(onset + length), frames)
    if end <= start:
      continue
    n = end - start
    k = np.arange(n) / sample_rate
    env[start:end] += np.minimum(1.0, np.minimum(k / attack, (n / sample_rate - k) / release))
  return np.clip(env, 0, 1)


def _voice(rng, frames, beat, key, sample_rate):
  # A melody on the major scale, 1-2 beats per note with rests; f0 glides between notes and wobbles.
  segment_of_frame = np.zeros(frames, np.int64)
  pitches, vowels, onsets, lengths = [], [], [], []
  pos = 0.0
  pitch = key + 12 * 4 + 7
  while pos < frames:
    length = beat * rng.choice([1, 1, 2, 0.5])
    if rng.random() < 0.8:
      pitch = key + 12 * 4 + 7 + _MAJOR[rng.integers(len(_MAJOR))] + 12 * rng.integers(0, 2) - 5
      onsets.append(pos)
      lengths.append(length * 0.9)
    segment_of_frame[int(pos):min(int(pos + length), frames)] = len(pitches)
    pitches.append(pitch)
    vowels.append(rng.integers(len(_VOWEL_FORMANTS)))
    pos += length
  note_hz = _hz(pitches)
  f0 = note_hz[segment_of_frame]
  glide = max(1, int(0.03 * sample_rate))
  running = np.cumsum(np.pad(f0, (glide, 0), mode="edge"))
  f0 = (running[glide:] - running[:-glide]) / glide  # moving average: glides between notes
  t = np.arange(frames) / sample_rate
  f0 = f0 * (1 + 0.012 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t))
  phase = 2 * np.pi * np.cumsum(f0) / sample_rate
  # Harmonic amplitudes per note from the vowel's formants: [notes, harmonics].
  harmonics = np.arange(1, 16)
  freqs = note_hz[:, None] * harmonics
  formants = _VOWEL_FORMANTS[np.array(vowels)]
  weights = np.sum(np.exp(-0.5 * ((freqs[:, :, None] - formants[:, None, :]) / 90.0) ** 2), axis=2)
  weights = np.where(freqs < sample_rate / 2 - 1000, weights + 0.05 / harmonics, 0.0)
  # sin(h x) by the Chebyshev recurrence: one sine and cosine instead of one sine per harmonic.
  two_cos = 2 * np.cos(phase)
  previous, current = np.zeros(frames), np.sin(phase)
  wave = np.zeros(frames)
  for h in range(len(harmonics)):
    wave += weights[segment_of_frame, h] * current
    previous, current = current, two_cos * current - previous
  wave /= max(1e-9, np.max(np.abs(wave)))
  return wave * _note_envelope(frames, onsets, lengths, 0.02, 0.05, sample_rate)


def _drums(rng, frames, beat, sample_rate):
  out = np.zeros((frames, 2))

  def add(event, at, pan):
    start = int(at)
    if start >= frames:
      return
    event = event[:frames - start]
    out[start:start + len(event)] += _pan(event, pan)

  k = np.arange(int(0.25 * sample_rate)) / sample_rate
  kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-k * 30)) / sample_rate) * np.exp(-k * 14)
  snare = rng.standard_normal(len(k)) * np.exp(-k * 22) * 0.6 + np.sin(2 * np.pi * 190 * k) * np.exp(-k * 30) * 0.3
  hat_len = int(0.05 * sample_rate)
  hat_pan = rng.uniform(-0.5, 0.5)
  for i in range(int(np.ceil(frames / beat)) + 1):
    at = i * beat
    add(kick if i % 2 == 0 else snare, at, 0.0)
    for half in (0, 0.5):
      noise = np.diff(rng.standard_normal(hat_len + 1))  # differencing pushes it up the spectrum
      add(noise * np.exp(-np.arange(hat_len) / sample_rate * 80) * 0.25, at + half * beat, hat_pan)
  return np.clip(out, -1, 1).astype(np.float32)


def _bass(frames, bar, chord_roots, sample_rate):
  # Two notes per bar: the root, then the fifth, in the 40-110 Hz octave.
  f0 = np.zeros(frames)
  onsets = []
  for b, root in enumerate(chord_roots):
    for half, interval in ((0, 0), (1, 7)):
      start = int(b * bar + half * bar / 2)
      f0[start:min(int(start + bar / 2), frames)] = _hz(12 * 2 + (root + interval) % 12 + 4)
      onsets.append(start)
  phase = 2 * np.pi * np.cumsum(f0) / sample_rate
  wave = np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)
  return wave / 1.55 * _note_envelope(frames, onsets, [bar / 2 * 0.95] * len(onsets), 0.01, 0.08, sample_rate)


def _pads(rng, frames, bar, chord_roots, sample_rate):
  # Triads in the 200-800 Hz range, each voice slightly detuned between left and right for width.
  out = np.zeros((frames, 2))
  detune = rng.uniform(0.002, 0.006)
  for b, root in enumerate(chord_roots):
    start, end = int(b * bar), min(int((b + 1) * bar), frames)
    if end <= start:
      continue
    seg = np.arange(end - start) / sample_rate
    env = np.minimum(1.0, np.minimum(seg / 0.3, (seg[-1] - seg + 1e-3) / 0.2))
    for interval in (0, 4, 7):
      freq = _hz(12 * 4 + (root + interval) % 12 + 7)
      for channel, sign in ((0, -1), (1, 1)):
        phase = 2 * np.pi * freq * (1 + sign * detune) * seg
        sine, cosine = np.sin(phase), np.cos(phase)
        # sin 2x and sin 3x from sin x and cos x.
        out[start:end, channel] += env * sine * (1 + 0.6 * cosine + 0.1 * (3 - 4 * sine * sine))
  return (out / 3.0).astype(np.float32)
