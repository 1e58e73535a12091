"""Loads the original Wave-U-Net's TF1 checkpoints (M4, M6, M5-HighSR, ...) into a Keras `WaveUNet`.

The checkpoint is read with `tf.train.load_checkpoint`; no TF1 runtime is involved. The original named its
variables by creation order (``separator/conv1d``, ``separator/conv1d_1``, ..., ``separator/interp_<level>``),
so the mapping is rebuilt from the config in that order rather than by sorting names (``conv1d_10`` sorts
before ``conv1d_2``). ``global_step`` and the optimizer's ``separator_solver/`` variables are skipped.
"""

import os
from typing import List, Tuple, Union

import numpy as np

from wave_unet_tf.config import Config, get_preset, PRESETS, ORIGINAL_NAMES
from wave_unet_tf.model.structure import structure

SCOPE = "separator/"


class CheckpointMismatchError(ValueError):
  """The checkpoint's variables do not fit the config."""


def original_variables(config: Config) -> List[Tuple[str, Tuple[int, ...], str]]:
  """``(original name, shape, keras weight)`` for every trainable variable, in the original's creation order:
  the down convolutions, the bottleneck, per up level its interpolation weight (learned upsampling) and
  merge convolution, then the output convolutions (`wave_unet_tf.model.structure`).

  The keras weight is named ``<layer>/<kernel|bias|interp>``, with ``outputs/<source>_conv/...`` for the
  output convolutions.
  """
  network = structure(config)
  variables = []

  def conv(c):
    index = sum(name.endswith("/kernel") for name, _, _ in variables)
    name = SCOPE + ("conv1d" if index == 0 else f"conv1d_{index}")
    variables.append((f"{name}/kernel", (c.kernel_size, c.in_features, c.filters), f"{c.layer}/kernel"))
    variables.append((f"{name}/bias", (c.filters,), f"{c.layer}/bias"))

  for level in network.levels:
    conv(level.down_conv)
  conv(network.bottleneck)
  for up, level in enumerate(network.up_path):
    if level.learned_upsampling:
      variables.append((f"{SCOPE}interp_{up}", (level.upsampled_features,), f"{level.upsample}/interp"))
    conv(level.up_conv)
  for output in network.output_convs:
    conv(output)
  return variables


def resolve_checkpoint(path: str) -> str:
  """The checkpoint prefix for a prefix or a folder (its newest checkpoint, else its only one)."""
  import tensorflow as tf

  if os.path.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    # The original's `checkpoint` files may name absolute paths of the machine that trained them.
    if latest and os.path.exists(latest + ".index"):
      return latest
    indexes = [f for f in os.listdir(path) if f.endswith(".index")]
    if len(indexes) == 1:
      return os.path.join(path, indexes[0][:-len(".index")])
    raise CheckpointMismatchError(f"{path}: no TF1 checkpoint (*.index) in this folder"
                                  if not indexes else f"{path}: several checkpoints; name one by its prefix")
  if not os.path.exists(path + ".index"):
    raise CheckpointMismatchError(f"{path}: not a TF1 checkpoint ({path}.index not found)")
  return path


def read_checkpoint(path: str) -> dict:
  """``{original name: array}`` of the model variables in a TF1 checkpoint (optimizer state skipped)."""
  import tensorflow as tf

  prefix = resolve_checkpoint(path)
  try:
    reader = tf.train.load_checkpoint(prefix)
  except Exception as e:  # TF raises several types for a corrupt or foreign file.
    raise CheckpointMismatchError(f"{prefix}: unreadable TF1 checkpoint ({type(e).__name__})") from None
  names = [n for n in reader.get_variable_to_shape_map() if n.startswith(SCOPE)]
  return {name: reader.get_tensor(name) for name in names}


def _looks_like(shapes: dict) -> str:
  """A hint at which preset's variables these are, for error messages."""
  matches = []
  for name, preset in PRESETS.items():
    expected = {n: s for n, s, _ in original_variables(preset)}
    if expected == shapes:
      original = next(o for o, p in ORIGINAL_NAMES.items() if p == name)
      matches.append(f"{name} ({original})")
  if matches:
    return "; the checkpoint looks like preset " + " or ".join(matches)
  return ""


def check_variables(config: Config, values: dict, checkpoint: str = "checkpoint") -> None:
  """Raises `CheckpointMismatchError` naming the first missing, left-over or mis-shaped variable."""
  shapes = {name: tuple(np.shape(v)) for name, v in values.items()}
  expected = original_variables(config)
  problem = None
  for name, shape, _ in expected:
    if name not in shapes:
      problem = f"variable {name} {list(shape)} of the config is missing from the checkpoint"
    elif shapes[name] != shape:
      problem = (f"variable {name} has shape {list(shapes[name])} in the checkpoint but {list(shape)} "
                 f"in the config")
    if problem:
      break
  if problem is None:
    extra = sorted(set(shapes) - {name for name, _, _ in expected})
    if extra:
      problem = f"variable {extra[0]} {list(shapes[extra[0]])} of the checkpoint is not in the config's model"
  if problem:
    raise CheckpointMismatchError(f"{checkpoint}: {problem}{_looks_like(shapes)}")


def _as_config(config: Union[Config, str]) -> Config:
  return get_preset(config) if isinstance(config, str) else config


def convert_tf1_checkpoint(checkpoint: str, config: Union[Config, str], output: str = None):
  """A `WaveUNet` with the weights of an original TF1 checkpoint.

  Args:
    checkpoint: a checkpoint prefix (``checkpoints/full_44KHz/full_44KHz-236118``) or its folder.
    config: the `Config` the checkpoint was trained with, or a preset name.
    output: if given, the model is also saved there as a ``.keras`` file (written atomically).

  Raises:
    CheckpointMismatchError: a variable is missing, left over or of the wrong shape.
  """
  from wave_unet_tf.model.wave_unet import build_model

  config = _as_config(config)
  values = read_checkpoint(checkpoint)
  check_variables(config, values, checkpoint)
  model = build_model(config)
  weights = {w.path: w for w in model.weights}  # Keras paths: "down_conv_0/kernel", "outputs/vocals_conv/bias"
  for name, _, keras_name in original_variables(config):
    weights[keras_name].assign(values[name])
  if output:
    from wave_unet_tf.model.saving import save_model
    save_model(model, output)
  return model
