"""The one configuration object: the original Wave-U-Net's config space, typed, frozen and validated.

Presets are the paper's models, reachable by paper name (``M5-HighSR``) or by the original ``Config.py`` name
(``full_44KHz``). Overrides go preset -> JSON file -> flags; the resolved config is written next to a model.
"""

import dataclasses
import json
from typing import Any, Mapping, Tuple

from wave_unet_tf import sizes

UPSAMPLING_MODES = ("linear", "learned")
OUTPUT_TYPES = ("direct", "difference")
OUTPUT_ACTIVATIONS = ("tanh", "linear")

VOICE_SOURCES = ("accompaniment", "vocals")
MULTI_INSTRUMENT_SOURCES = ("bass", "drums", "other", "vocals")


@dataclasses.dataclass(frozen=True)
class Config:
  """A Wave-U-Net model and its training recipe.

  Attributes:
    num_layers: Down- and upsampling blocks; the time resolution halves ``num_layers`` times.
    num_initial_filters: Block ``i`` of the down path has ``num_initial_filters * (i + 1)`` filters.
    filter_size: Kernel size of the down path and bottleneck convolutions.
    merge_filter_size: Kernel size of the up path convolutions after each crop-and-concat.
    input_filter_size: The original's first-block kernel size. As in the original, it only enters the
      size computation (`io_sizes`); the first convolution uses `filter_size`.
    output_filter_size: Kernel size of the per-source output convolutions.
    upsampling: ``linear`` interpolation or the paper's ``learned`` interpolation.
    output_type: ``direct`` (one output convolution per source) or ``difference`` (the last source is the
      mixture minus the others).
    output_activation: ``tanh``, or ``linear`` with a clip to [-1, 1] at inference.
    context: Valid convolutions, so the output sees extra input context (the paper's M3 onwards).
    num_channels: 1 (mono) or 2 (stereo).
    source_names: Output sources, in order; with ``difference`` output the last one is the residual.
    sample_rate: Rate in Hz the model works at; audio is resampled to it.
    num_frames: Requested output frames per training example (rounded up by `io_sizes` with context).
    batch_size: Examples per training step (the global batch across replicas).
    learning_rate: Adam learning rate of the first training stage.
    steps_per_epoch: Training steps between validations.
    patience: Epochs without a better validation loss before a stage ends.
    max_epochs: Upper bound on epochs per stage (0: no bound).
    fine_tune: Run the original's second stage: batch times ``fine_tune_batch_factor``, lr
      ``fine_tune_learning_rate``, from the best checkpoint of the first.
    fine_tune_batch_factor: Batch multiplier of the second stage.
    fine_tune_learning_rate: Learning rate of the second stage.
    augmentation: Scale each source by U(``amplify_min``, ``amplify_max``) and re-sum the mixture.
    amplify_min: Lower bound of the random source gain.
    amplify_max: Upper bound of the random source gain.
    adam_beta_1: Adam's first-moment decay.
    adam_beta_2: Adam's second-moment decay.
    adam_epsilon: Adam's epsilon; TF1's default 1e-8, not Keras' 1e-7.
  """

  num_layers: int = 12
  num_initial_filters: int = 24
  filter_size: int = 15
  merge_filter_size: int = 5
  input_filter_size: int = 15
  output_filter_size: int = 1
  upsampling: str = "linear"
  output_type: str = "direct"
  output_activation: str = "tanh"
  context: bool = False
  num_channels: int = 1
  source_names: Tuple[str, ...] = VOICE_SOURCES
  sample_rate: int = 22050
  num_frames: int = 16384
  batch_size: int = 16
  learning_rate: float = 1e-4
  steps_per_epoch: int = 2000
  patience: int = 20
  max_epochs: int = 0
  fine_tune: bool = True
  fine_tune_batch_factor: int = 2
  fine_tune_learning_rate: float = 1e-5
  augmentation: bool = True
  amplify_min: float = 0.7
  amplify_max: float = 1.0
  adam_beta_1: float = 0.9
  adam_beta_2: float = 0.999
  adam_epsilon: float = 1e-8

  def __post_init__(self):
    # JSON and flags give lists; keep the frozen object hashable.
    object.__setattr__(self, "source_names", tuple(self.source_names))
    _validate(self)

  def replace(self, **changes) -> "Config":
    """A copy with ``changes`` applied (original ``Config.py`` names accepted), validated."""
    return dataclasses.replace(self, **_canonical_keys(changes))

  @property
  def padding(self) -> str:
    """Keras convolution padding: ``valid`` with context, else ``same``."""
    return "valid" if self.context else "same"

  @property
  def num_sources(self) -> int:
    return len(self.source_names)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["source_names"] = list(self.source_names)
    return d

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def merge(self, d: Mapping[str, Any]) -> "Config":
    """A copy with the fields in ``d`` (this project's or the original ``Config.py``'s keys) applied; the
    original's keys for its own data loading are ignored."""
    return dataclasses.replace(self, **_canonical_keys(d, ignore_unknown_original=True))

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Config":
    """Builds a config from the defaults and ``d`` (see `merge`)."""
    return cls().merge(d)

  @classmethod
  def from_json_file(cls, path: str) -> "Config":
    return cls.from_dict(read_json_config(path))


def read_json_config(path: str) -> dict:
  """The config dict in a JSON file: a bare dict, or one under a ``config`` key (as the fixtures have)."""
  try:
    with open(path) as f:
      d = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable config JSON ({e})") from None
  if not isinstance(d, dict):
    raise ValueError(f"{path}: a config JSON must hold an object")
  return d.get("config", d)


# The original Config.py's keys that name one of ours differently.
_ORIGINAL_KEYS = {
    "expected_sr": "sample_rate",
    "init_sup_sep_lr": "learning_rate",
    "epoch_it": "steps_per_epoch",
    "worse_epochs": "patience",
}
# Original keys that describe its own data loading or other networks; meaningless here.
_ORIGINAL_IGNORED = {
    "musdb_path", "estimates_path", "data_path", "model_base_dir", "log_dir", "cache_size", "num_workers",
    "num_snippets_per_track", "network", "raw_audio_loss", "task", "num_sources", "duration", "seed",
    "experiment_id",
}


def _canonical_keys(d: Mapping[str, Any], ignore_unknown_original: bool = False) -> dict:
  fields = {f.name for f in dataclasses.fields(Config)}
  out = {}
  for key, value in d.items():
    if key == "mono_downmix":
      out["num_channels"] = 1 if value else 2
    elif key in _ORIGINAL_KEYS:
      out[_ORIGINAL_KEYS[key]] = value
    elif key in fields:
      out[key] = value
    elif ignore_unknown_original and key in _ORIGINAL_IGNORED:
      continue
    else:
      raise ValueError(f"unknown config field {key!r}; valid fields: {', '.join(sorted(fields))}")
  if "num_channels" in d and "mono_downmix" in d and out["num_channels"] != d["num_channels"]:
    raise ValueError("config fields num_channels and mono_downmix disagree")
  return out


def _validate(c: Config) -> None:
  def require(ok, field, why):
    if not ok:
      raise ValueError(f"config field {field}={getattr(c, field)!r}: {why}")

  for field in ("num_layers", "num_initial_filters", "filter_size", "merge_filter_size", "input_filter_size",
                "output_filter_size", "sample_rate", "num_frames", "batch_size", "steps_per_epoch",
                "fine_tune_batch_factor"):
    value = getattr(c, field)
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, field,
            "must be a positive integer")
  for field in ("patience", "max_epochs"):
    value = getattr(c, field)
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, field,
            "must be a non-negative integer")
  require(c.upsampling in UPSAMPLING_MODES, "upsampling", f"must be one of {UPSAMPLING_MODES}")
  require(c.output_type in OUTPUT_TYPES, "output_type", f"must be one of {OUTPUT_TYPES}")
  require(c.output_activation in OUTPUT_ACTIVATIONS, "output_activation", f"must be one of {OUTPUT_ACTIVATIONS}")
  require(isinstance(c.context, bool), "context", "must be true or false")
  require(c.num_channels in (1, 2), "num_channels", "must be 1 (mono) or 2 (stereo)")
  require(len(c.source_names) >= 1 and all(isinstance(s, str) and s for s in c.source_names),
          "source_names", "must be a non-empty list of names")
  require(len(set(c.source_names)) == len(c.source_names), "source_names", "names must be unique")
  require(c.output_type != "difference" or len(c.source_names) >= 2, "source_names",
          "difference output needs at least two sources")
  for field in ("learning_rate", "fine_tune_learning_rate", "adam_epsilon"):
    require(isinstance(getattr(c, field), (int, float)) and getattr(c, field) > 0, field, "must be positive")
  for field in ("adam_beta_1", "adam_beta_2"):
    require(0 <= getattr(c, field) < 1, field, "must be in [0, 1)")
  require(0 < c.amplify_min <= c.amplify_max, "amplify_min", "need 0 < amplify_min <= amplify_max")
  if c.context:
    # The bottleneck must keep at least two samples (the original asserts the same).
    require(sizes.bottleneck_frames(c, c.num_frames) >= 2, "num_frames", "too small for this many layers")
  else:
    require(c.num_frames % (2 ** c.num_layers) == 0, "num_frames",
            f"must be a multiple of 2**num_layers = {2 ** c.num_layers} without context")


_PAPER_PRESETS = {
    # paper name: (original Config.py name, changes from the defaults)
    "M1": ("baseline", {}),
    "M2": ("baseline_diff", dict(output_type="difference")),
    "M3": ("baseline_context", dict(output_type="difference", context=True)),
    "M4": ("baseline_stereo", dict(output_type="difference", context=True, num_channels=2)),
    "M5": ("full", dict(output_type="difference", context=True, num_channels=2, upsampling="learned")),
    "M5-HighSR": ("full_44KHz", dict(output_type="difference", context=True, num_channels=2,
                                     upsampling="learned", sample_rate=44100)),
    "M6": ("full_multi_instrument", dict(output_type="difference", context=True, num_channels=2,
                                         source_names=MULTI_INSTRUMENT_SOURCES)),
    "M7": ("baseline_comparison", dict(output_type="difference", context=True, num_initial_filters=34,
                                       num_frames=768 * 127 + 1024, sample_rate=8192, batch_size=4)),
}

PRESETS = {name: Config(**changes) for name, (_, changes) in _PAPER_PRESETS.items()}
ORIGINAL_NAMES = {original: name for name, (original, _) in _PAPER_PRESETS.items()}


def preset_names() -> Tuple[str, ...]:
  """Every accepted preset name: paper names, then the original's."""
  return tuple(PRESETS) + tuple(ORIGINAL_NAMES)


def get_preset(name: str) -> Config:
  """The paper's model ``name`` (``M1`` ... ``M7``, ``M5-HighSR``) or its original ``Config.py`` name."""
  key = ORIGINAL_NAMES.get(name, name)
  for candidate in PRESETS:
    if candidate.lower() == key.lower():
      return PRESETS[candidate]
  raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
