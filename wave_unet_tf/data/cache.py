"""Decode once: every track decoded, channel-converted and soxr-resampled to the model's rate, then cached.

A cached track is one ``.npy`` file, int16 ``[sources, frames, channels]`` in the config's source order, plus a
``.json`` beside it holding the scale that turns it back into float32 (``float = int16 * scale``; the scale
is the track's peak over 32767, so nothing clips and the precision is that of 16-bit audio). int16 halves
disk, page cache and read bandwidth against float32. The file name carries a hash of the rate, the channel
count, the source set and every stem file's path, size and modification time, so a change of any of them
makes a new entry and later epochs and later runs never decode again. Both files are written atomically;
the ``.json`` is written last, so its presence marks a complete entry.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
from typing import Dict, List, Sequence

import numpy as np
import tqdm
from wave_unet_tf import runtime

from wave_unet_tf import audio
from wave_unet_tf.config import Config
from wave_unet_tf.data.tracks import DatasetError, StemFile, Track, check_stems_agree, require_ffmpeg
from wave_unet_tf.files import atomic_output, remove_stale_temporaries, write_text_atomically

CACHE_FORMAT = 1
INT16_MAX = 32767


@dataclasses.dataclass(frozen=True)
class CachedTrack:
  """A decoded track on disk.

  Attributes:
    name: The track's name.
    path: The ``.npy`` file, int16 ``[sources, frames, channels]``.
    source_names: Sources in the file's order (the config's).
    frames: Samples per source at the model's rate.
    channels: 1 or 2.
    scale: ``float32 audio = int16 * scale``.
    data_offset: Byte offset of the array data in ``path`` (after the ``.npy`` header).
  """

  name: str
  path: str
  source_names: tuple
  frames: int
  channels: int
  scale: float
  data_offset: int

  def load(self, mmap: bool = True) -> np.ndarray:
    """The int16 array ``[sources, frames, channels]``, memory-mapped by default."""
    return np.load(self.path, mmap_mode="r" if mmap else None)

  def sources(self) -> Dict[str, np.ndarray]:
    """``{source: float32 [frames, channels]}``, the whole track in memory."""
    data = self.load()
    return {name: data[i].astype(np.float32) * np.float32(self.scale) for i, name in enumerate(self.source_names)}


def cache_entry_name(config: Config, track: Track) -> str:
  """``<track name>-<hash>``: the hash changes with the rate, channels, sources or any stem file."""
  files = []
  for stem in track.stem_files:
    try:
      st = os.stat(stem.path)
      files.append([os.path.abspath(stem.path), stem.stream, st.st_size, st.st_mtime_ns])
    except OSError:
      files.append([os.path.abspath(stem.path), stem.stream, None, None])
  key = {
      "format": CACHE_FORMAT, "sample_rate": config.sample_rate, "channels": config.num_channels,
      "sources": [[name, [[os.path.abspath(s.path), s.stream] for s in stems]] for name, stems in track.sources],
      "files": files,
  }
  digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  safe_name = re.sub(r"[^\w.-]+", "_", track.name)[:80]
  return f"{safe_name}-{digest}"


def decode_track(config: Config, track: Track) -> np.ndarray:
  """Decodes, sums, converts channels and resamples a track: float32 ``[sources, frames, channels]``.

  Raises:
    audio.AudioError: an unreadable, empty or non-finite stem file (the message names it).
    DatasetError: stems of unequal rate or length (the message names the track).
  """
  decoded = {}
  for path, streams in _streams_by_file(track.stem_files).items():
    if streams == [None]:
      waveform, rate = audio.load(path)
      decoded[StemFile(path)] = (waveform, rate)
    else:
      for stream, (waveform, rate) in zip(streams, _read_stem_mp4(path, streams)):
        decoded[StemFile(path, stream)] = (waveform, rate)
  check_stems_agree(track, {_stem_label(s): (rate, len(w)) for s, (w, rate) in decoded.items()})
  rate = next(iter(decoded.values()))[1]
  sources = []
  for _, stems in track.sources:
    summed = sum(audio.convert_channels(decoded[s][0], config.num_channels) for s in stems)
    sources.append(np.asarray(summed, np.float32))
  # One soxr call over all sources' channels side by side: [frames, sources * channels].
  side_by_side = np.concatenate(sources, axis=1)
  resampled = audio.resample(side_by_side, rate, config.sample_rate)
  frames = resampled.shape[0]
  return np.ascontiguousarray(
      resampled.reshape(frames, len(sources), config.num_channels).transpose(1, 0, 2), dtype=np.float32)


def _stem_label(stem: StemFile) -> str:
  name = os.path.basename(stem.path)
  return name if stem.stream is None else f"{name} stream {stem.stream}"


def _streams_by_file(stems: Sequence[StemFile]):
  by_file = {}
  for stem in stems:
    by_file.setdefault(stem.path, []).append(stem.stream)
  return by_file


def _read_stem_mp4(path, streams):
  """Decodes the given streams of a NI stem file through stempeg (ffmpeg): ``[(waveform, rate)]``."""
  if not os.path.isfile(path):
    raise audio.AudioError(f"{path}: no such audio file")
  require_ffmpeg(f"reading {path}")
  import stempeg
  try:
    stems, rate = stempeg.read_stems(path, stem_id=list(streams), dtype=np.float32, always_3d=True)
  except Exception as e:
    raise audio.AudioError(f"{path}: unreadable stem file ({' '.join(str(e).split())[:300]})") from None
  out = []
  for stream, waveform in zip(streams, stems):
    waveform = np.asarray(waveform, np.float32)
    audio.check_waveform(waveform, f"{path} stream {stream}")
    out.append((waveform, int(rate)))
  return out


def _entry_paths(cache_dir, entry):
  return os.path.join(cache_dir, entry + ".npy"), os.path.join(cache_dir, entry + ".json")


def _open_entry(npy_path, json_path):
  """The `CachedTrack` of a complete entry, or None."""
  if not (os.path.isfile(npy_path) and os.path.isfile(json_path)):
    return None
  try:
    with open(json_path) as f:
      meta = json.load(f)
    with open(npy_path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(f)
      offset = f.tell()
    if fortran or dtype != np.int16 or list(shape) != [len(meta["source_names"]), meta["frames"],
                                                      meta["channels"]]:
      return None
    if os.path.getsize(npy_path) != offset + int(np.prod(shape)) * dtype.itemsize:
      return None  # damaged (cut short or grown): rebuilt, never memory-mapped past its end
    return CachedTrack(meta["name"], npy_path, tuple(meta["source_names"]), int(meta["frames"]),
                       int(meta["channels"]), float(meta["scale"]), offset)
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _write_entry(config: Config, track: Track, npy_path, json_path) -> CachedTrack:
  decoded = decode_track(config, track)
  peak = float(np.max(np.abs(decoded))) if decoded.size else 0.0
  scale = peak / INT16_MAX if peak > 0 else 1.0 / INT16_MAX
  quantized = np.round(decoded / np.float32(scale)).astype(np.int16)
  with atomic_output(npy_path, suffix=".npy") as tmp:
    np.save(tmp, quantized)
  meta = {"name": track.name, "source_names": list(track.source_names), "frames": int(decoded.shape[1]),
          "channels": int(decoded.shape[2]), "scale": scale, "sample_rate": config.sample_rate,
          "stems": [[s.path, s.stream] for s in track.stem_files]}
  write_text_atomically(json_path, json.dumps(meta, indent=1))
  return _open_entry(npy_path, json_path)


def cache_tracks(config: Config, tracks: Sequence[Track], cache_dir: str, strict: bool = False,
                 progress: bool = True, num_workers: int = None) -> List[CachedTrack]:
  """Decodes and caches the tracks not cached yet (with a progress bar); returns every usable track.

  Args:
    config: Its sample rate, channel count and sources define the cached audio.
    tracks: From `wave_unet_tf.data.tracks.find_tracks`.
    cache_dir: Created if missing; one ``.npy`` + ``.json`` per track and config.
    strict: Raise on an unreadable stem file instead of skipping its track with a warning.
    progress: Show a tqdm bar while decoding.
    num_workers: Tracks decoded at once (ffmpeg and soxr run outside the GIL); default: CPU count, at most 4.

  Returns:
    `CachedTrack` list in the order of ``tracks``, without skipped ones.

  Raises:
    DatasetError: stems of unequal length or rate; with ``strict``, an unreadable file; no usable track.
  """
  cache_dir = os.fspath(cache_dir)
  os.makedirs(cache_dir, exist_ok=True)
  remove_stale_temporaries(cache_dir)  # what killed runs left
  results, todo = [None] * len(tracks), []
  for i, track in enumerate(tracks):
    paths = _entry_paths(cache_dir, cache_entry_name(config, track))
    results[i] = _open_entry(*paths)
    if results[i] is None:
      todo.append((i, track, paths))
  if todo:
    workers = num_workers or min(4, os.cpu_count() or 1)
    bar = tqdm.tqdm(total=len(todo), desc=f"decoding tracks to {cache_dir}", unit="track", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
      futures = {pool.submit(_write_entry, config, track, *paths): (i, track) for i, track, paths in todo}
      for future in concurrent.futures.as_completed(futures):
        i, track = futures[future]
        bar.update(1)
        try:
          results[i] = future.result()
        except audio.AudioError as e:
          if strict:
            raise DatasetError(f"track {track.name!r}: {e}") from None
          runtime.notice(f"skipping track {track.name!r}: {e}")
    bar.close()
  cached = [r for r in results if r is not None]
  if tracks and not cached:
    raise DatasetError(f"none of the {len(tracks)} tracks could be read (first: {tracks[0].path})")
  return cached


def cached_track(config: Config, track: Track, cache_dir: str) -> Dict[str, np.ndarray]:
  """A whole track at the model's rate: ``{"mix": [frames, channels], source: [frames, channels]}`` float32.

  ``mix`` is the sum of the config's sources (as in training). Decodes and caches the track if needed.
  """
  (entry,) = cache_tracks(config, [track], cache_dir, strict=True, progress=False)
  sources = entry.sources()
  mix = np.sum([sources[name] for name in entry.source_names], axis=0, dtype=np.float32)
  return {"mix": mix, **sources}
