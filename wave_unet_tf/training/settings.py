"""A run's settings besides the model `Config`: where the data is and how it is read, how the run is
distributed and seeded, how long and how often. Typed, with each default here once; the train command's
flags are generated from these fields (`define_flags`), and the settings are saved in the run folder
beside ``config.json`` and checked when a run resumes (`check_resumable`).

Pure Python: imported by the command before TensorFlow starts.
"""

import dataclasses
import json
import os
import typing
from typing import Optional

from absl import flags

from wave_unet_tf.files import write_text_atomically

SETTINGS_FILE = "run_settings.json"
SPLIT_MODES = ("official", "random")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")


def _setting(default, help_text, choices=None, changes_results=True):
  """A field whose metadata makes its flag: help text, allowed values, and whether a resumed run may
  change it (``changes_results=False``: paths, lengths and intervals)."""
  return dataclasses.field(default=default, metadata=dict(help=help_text, choices=choices,
                                                          changes_results=changes_results))


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """Where the tracks are and how they are read."""

  musdb_root: Optional[str] = _setting(
      None, "MUSDB18 (.stem.mp4), MUSDB18-HQ (WAV) or a folder in MUSDB18-HQ layout "
      "(train/<track>/{mixture,vocals,drums,bass,other}.wav).", changes_results=False)
  validation_root: Optional[str] = _setting(
      None, "Validate on the training tracks of this dataset instead of a split of --musdb_root (for datasets "
      "too small to split).", changes_results=False)
  cache_dir: Optional[str] = _setting(
      None, "Decoded tracks are cached here (default: <model_dir>/../.cache).", changes_results=False)
  is_wav: Optional[bool] = _setting(None, "The root is in MUSDB18-HQ layout (default: detected).",
                                    changes_results=False)
  split_mode: str = _setting("official", "Validation split: musdb's official one, or the original's random 75/25 "
                             "(seed 1337).", choices=SPLIT_MODES)
  channel_swap: bool = _setting(False, "Randomly swap the stereo channels of training excerpts.")
  remix: bool = _setting(False, "Mix sources of different songs in training excerpts.")
  max_validation_batches: int = _setting(0, "Validate on at most this many batches (0: all).")
  strict_data: bool = _setting(False, "Stop at an unreadable stem file instead of skipping its track.",
                               changes_results=False)


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How the run is distributed and seeded, how long it goes and how often it saves and logs."""

  strategy: str = _setting("default", "Data parallelism: one device; mirrored: all local GPUs (else the "
                           "--num_cpu_devices), with tf.distribute under TensorFlow and keras.distribution."
                           "DataParallel under JAX; workers from TF_CONFIG or a TPU (TensorFlow). PyTorch: one "
                           "device.", choices=STRATEGIES)
  tpu: Optional[str] = _setting(None, "TPU address for --strategy=tpu (Colab: leave empty).", changes_results=False)
  num_cpu_devices: int = _setting(1, "Split the CPU into this many devices (try --strategy=mirrored without "
                                  "GPUs; TensorFlow and JAX).", changes_results=False)
  mixed_precision: str = _setting("none", "Keras mixed-precision policy; outputs and loss stay float32.",
                                  choices=PRECISIONS)
  seed: int = _setting(0, "Seeds the initial weights and the data stream (a resumed run re-seeds the stream "
                       "from its step).")
  jit_compile: bool = _setting(True, "Compile the training step with XLA (TensorFlow, JAX; PyTorch runs eagerly).",
                               changes_results=False)
  max_steps: int = _setting(0, "Stop after this many steps in all (0: early stopping decides); rerun to go on.",
                            changes_results=False)
  checkpoint_every: int = _setting(500, "Also checkpoint every this many steps within an epoch (0: only after "
                                   "epochs).", changes_results=False)
  summary_every: int = _setting(20, "Write the training loss to TensorBoard every this many steps.",
                                changes_results=False)
  init_from: Optional[str] = _setting(
      None, "Fine-tune: start a new run from this model's weights (a catalogue name such as M5-HighSR, a .keras "
      "file, a training --model_dir, an original TF1 checkpoint). The config is that model's, changed by any "
      "config flag given; the step counter, optimizer and early stopping start fresh. Applies to a --model_dir "
      "without checkpoints; run the same command again to resume the run itself.")
  freeze: Optional[str] = _setting(
      None, "Keep these parts fixed while the rest trains, comma-separated: down, bottleneck, up, outputs, or "
      "a layer's name (down_conv_0, interp_3, up_conv_11, outputs/vocals_conv).")


SETTINGS = (DataOptions, RunOptions)


def define_flags():
  """One absl flag per settings field, with the field's default, help text and allowed values."""
  for cls in SETTINGS:
    for field in dataclasses.fields(cls):
      meta = field.metadata
      kind = typing.get_args(field.type)[0] if typing.get_origin(field.type) is typing.Union else field.type
      if meta["choices"]:
        flags.DEFINE_enum(field.name, field.default, meta["choices"], meta["help"])
      elif kind is bool:
        flags.DEFINE_boolean(field.name, field.default, meta["help"])
      elif kind is int:
        flags.DEFINE_integer(field.name, field.default, meta["help"], lower_bound=0)
      else:
        flags.DEFINE_string(field.name, field.default, meta["help"])


def from_flags(values=flags.FLAGS):
  """``(DataOptions, RunOptions)`` from the flags `define_flags` made."""
  return tuple(cls(**{f.name: values[f.name].value for f in dataclasses.fields(cls)}) for cls in SETTINGS)


def to_dict(data: DataOptions, run: RunOptions) -> dict:
  return {"data": dataclasses.asdict(data), "run": dataclasses.asdict(run)}


def save(model_dir: str, data: DataOptions, run: RunOptions, init: Optional[dict] = None) -> None:
  """Writes ``run_settings.json``; ``init`` records the model a fine-tuning run started from (its source and
  weights digest)."""
  saved = to_dict(data, run)
  if init:
    saved["init"] = init
  write_text_atomically(os.path.join(model_dir, SETTINGS_FILE), json.dumps(saved, indent=2) + "\n")


def saved_init(model_dir: str) -> Optional[dict]:
  """What ``run_settings.json`` records of the model a run started from (None: from scratch, or no file)."""
  try:
    with open(os.path.join(model_dir, SETTINGS_FILE)) as f:
      return json.load(f).get("init")
  except (OSError, ValueError):
    return None


class SettingsChangedError(ValueError):
  """A resumed run asks for a setting that would change its results."""


def check_resumable(model_dir: str, data: DataOptions, run: RunOptions) -> bool:
  """Raises `SettingsChangedError` naming each setting a resumed run changes that changes results (with both
  values); False when the folder has no saved settings yet."""
  path = os.path.join(model_dir, SETTINGS_FILE)
  if not os.path.exists(path):
    return False
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise SettingsChangedError(f"{path}: unreadable run settings ({e})") from None
  now = to_dict(data, run)
  changed = []
  for group, cls in zip(("data", "run"), SETTINGS):
    for field in dataclasses.fields(cls):
      before = saved.get(group, {}).get(field.name, field.default)
      if field.metadata["changes_results"] and before != now[group][field.name]:
        changed.append(f"--{field.name}: {before!r} -> {now[group][field.name]!r}")
  if changed:
    raise SettingsChangedError(f"--model_dir={model_dir} was trained with other settings ({'; '.join(changed)}); "
                               f"resume with the same ones, or use a new --model_dir")
  return True
