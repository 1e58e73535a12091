"""MUSDB18 / MUSDB18-HQ tracks through musdb, with the checks musdb leaves out."""

import os
from typing import Optional, Sequence

SUBSETS = ("train", "test")
SPLITS = ("train", "valid")


def open_tracks(musdb_root: str, subset: str = "test", split: Optional[str] = None, is_wav: bool = False,
                track_names: Optional[Sequence[str]] = None):
  """The musdb tracks of ``subset`` (and ``split``, only for ``train``) under ``musdb_root``.

  Raises:
    ValueError: an unknown subset or split, or no tracks at all: musdb silently returns none for a wrong
      root, a wrong ``is_wav`` or an empty folder, which would otherwise "evaluate" nothing.
  """
  import musdb
  if subset not in SUBSETS:
    raise ValueError(f"subset {subset!r}: must be one of {', '.join(SUBSETS)}")
  if split is not None and split not in SPLITS:
    raise ValueError(f"split {split!r}: must be one of {', '.join(SPLITS)}")
  if split is not None and subset != "train":
    raise ValueError(f"split {split!r} only applies to subset 'train' (MUSDB's validation tracks are training "
                     f"tracks)")
  if not os.path.isdir(musdb_root):
    raise ValueError(f"{musdb_root}: no such MUSDB folder")
  db = musdb.DB(root=musdb_root, is_wav=is_wav, subsets=subset, split=split)
  tracks = list(db.tracks)
  if track_names:
    wanted = set(track_names)
    tracks = [t for t in tracks if t.name in wanted]
    missing = wanted - {t.name for t in tracks}
    if missing:
      raise ValueError(f"{musdb_root}: no track(s) {', '.join(sorted(missing))} in subset {subset}")
  if not tracks:
    layout = "<subset>/<track>/mixture.wav (MUSDB18-HQ)" if is_wav else "<subset>/<track>.stem.mp4 (MUSDB18)"
    raise ValueError(f"{musdb_root}: no MUSDB tracks in subset {subset!r}"
                     f"{f' split {split!r}' if split else ''}; expected {layout}"
                     f"{'' if is_wav else ' (use --is_wav for MUSDB18-HQ)'}")
  return tracks


def check_sources(track, source_names):
  """Raises ValueError unless every model source is a target of ``track`` (musdb defines vocals, drums,
  bass, other and accompaniment = bass + drums + other)."""
  missing = [s for s in source_names if s not in track.targets]
  if missing:
    raise ValueError(f"model sources {', '.join(missing)} are not MUSDB targets "
                     f"({', '.join(track.targets)}); cannot score them")
