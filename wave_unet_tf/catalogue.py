"""The paper's pretrained models by name: the original project's released checkpoints (M4, M6, M5-HighSR).

The catalogue is data (``catalogue.json`` beside this module): per model its name and the original's name,
the archive's URL and optional sha256, the folder inside the archive, the preset, the sources, the sample
rate and the published SDR figures. `wave_unet_tf.pretrained` fetches and converts them; every place a model
is named (``--model``, `load_model`, `Separator`) takes these names.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogue.json")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One named pretrained model.

  Attributes:
    name: the name in the paper (``M5-HighSR``).
    original_name: the original project's config name, also its folder in the archive (``full_44KHz``).
    preset: the `wave_unet_tf.config` preset the checkpoint was trained with.
    url: where the archive holding it is published.
    archive: the archive's file name (``models.zip``).
    sha256: the archive's sha256 (hex), or None where not known.
    folder: the folder holding the checkpoint inside the archive, found at any depth.
    sources: the model's sources, in output order.
    sample_rate: the model's rate in Hz.
    sdr: the published median SDR per source (dB, MUSDB18 test).
    sdr_source: where the SDR figures come from.
  """
  name: str
  original_name: str
  preset: str
  url: str
  archive: str
  sha256: Optional[str]
  folder: str
  sources: Tuple[str, ...]
  sample_rate: int
  sdr: Dict[str, float]
  sdr_source: str


def _load() -> Tuple[Entry, ...]:
  with open(_DATA) as f:
    models = json.load(f)["models"]
  return tuple(Entry(**{**m, "sources": tuple(m["sources"]), "sha256": (m["sha256"] or "").lower() or None})
               for m in models)


ENTRIES = _load()
NAMES = tuple(entry.name for entry in ENTRIES)  # canonical names, the default first
DEFAULT_MODEL = "M5-HighSR"  # what wave-unet-separate uses without --model (first in catalogue.json)

_BY_NAME = {key: entry for entry in ENTRIES for key in (entry.name, entry.original_name)}


def is_name(text) -> bool:
  """Whether ``text`` names a catalogue model (``M4``, ``M6``, ``M5-HighSR``, ``baseline_stereo``,
  ``full_multi_instrument``, ``full_44KHz``; case as written)."""
  return isinstance(text, str) and text in _BY_NAME


def get(name: str) -> Entry:
  """The catalogue's entry for a canonical or original name; ValueError listing the names otherwise."""
  if not is_name(name):
    raise ValueError(f"{name}: not a pretrained model's name (one of {', '.join(all_names())})")
  return _BY_NAME[name]


def all_names() -> Tuple[str, ...]:
  """Every name the catalogue answers to: the canonical ones, then the original project's."""
  return NAMES + tuple(entry.original_name for entry in ENTRIES)
