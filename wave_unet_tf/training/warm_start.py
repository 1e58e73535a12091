"""Fine-tuning: a new run that starts from the weights of another model (``--init_from``).

The source is any model source that holds a trainable `WaveUNet` (`wave_unet_tf.model_sources.load_model`: a
catalogue name, a ``.keras`` file, a training run folder, an original TF1 checkpoint, a URL of a ``.keras``).
The run's config is the source's, changed by the config flags given. What may change:

- fields that shape the weights (`SHAPE_FIELDS`) may not: refused naming each field and both values;
- ``source_names`` (and ``output_type``) may: every layer but the output convolutions starts from the source,
  and each output convolution whose source the source model estimates too starts from its own;
- ``sample_rate`` may, with a notice (the filters were learned at the source's rate);
- anything else (the recipe: batch, learning rate, epochs, augmentation) freely.

Only the weights come from the source: the step counter, the optimizer and early stopping start fresh.
`freeze` keeps named parts of the network fixed while the rest trains.
"""

import dataclasses
import os
from typing import List, Sequence, Tuple

import numpy as np

from wave_unet_tf.config import Config
from wave_unet_tf.model.structure import structure

# Fields whose change changes a weight's shape (or the network's layers): a fine-tuning run keeps them.
SHAPE_FIELDS = ("num_layers", "num_initial_filters", "filter_size", "merge_filter_size", "output_filter_size",
                "num_channels", "upsampling", "context")
# The parts `--freeze` names besides single layers (see `freeze`).
PARTS = ("down", "bottleneck", "up", "outputs")


class InitFromError(ValueError):
  """A fine-tuning source or change that cannot be used; the message names the flag."""


def has_checkpoint(model_dir: str) -> bool:
  """Whether a training run folder holds a checkpoint to resume (then ``--init_from`` no longer applies)."""
  from wave_unet_tf.training import checkpoints, legacy
  folder = os.path.join(os.fspath(model_dir), "checkpoints")
  return bool(checkpoints.CheckpointFolder(folder).listed()) or legacy.has_checkpoint(folder)


def load_source(source: str):
  """The `WaveUNet` named by ``source``, through `model_sources.load_model`; `InitFromError` for a source that
  holds no trainable Keras model (a SavedModel, a ``.tflite``) or none at all."""
  from wave_unet_tf.model.saving import NotAModelError
  from wave_unet_tf.model.wave_unet import WaveUNet
  from wave_unet_tf import model_sources

  path = os.fspath(source)
  if path.endswith(".tflite") or os.path.isfile(os.path.join(path, "saved_model.pb")):
    _refuse_inference_only(path, tflite=path.endswith(".tflite"))
  try:
    model = model_sources.load_model(path)
  except (NotAModelError, ValueError, OSError) as e:
    raise InitFromError(f"--init_from={source}: {' '.join(str(e).split())}") from None
  if not isinstance(model, WaveUNet):  # a forward pass: what load_model gives for exported models
    _refuse_inference_only(path, tflite="tflite" in type(model).__name__.lower())
  return model


def _refuse_inference_only(source, tflite):
  kind = "a .tflite file" if tflite else "a SavedModel"
  raise InitFromError(f"--init_from={source}: {kind} holds an inference graph, not a trainable Keras model; "
                      f"fine-tune from the .keras file, training run folder or checkpoint it was exported from")


def check_config(source: Config, config: Config, name: str) -> List[str]:
  """The notices a fine-tuning run from a ``source`` model to ``config`` gives (new output layers, another
  sample rate); raises `InitFromError` naming every field that would change a weight's shape."""
  changed = [f"{field}: {getattr(source, field)!r} -> {getattr(config, field)!r}" for field in SHAPE_FIELDS
             if getattr(source, field) != getattr(config, field)]
  if changed:
    raise InitFromError(f"--init_from={name}: cannot change what shapes its weights ({'; '.join(changed)}); "
                        f"drop those flags, or train from scratch with --preset")
  notices = []
  fresh = fresh_outputs(source, config)
  if fresh:
    kept = [s for s in _estimated(config) if s not in fresh]
    notices.append(
        f"--init_from={name}: its sources are {', '.join(source.source_names)} ({source.output_type} output); "
        f"the output convolution{'s' if len(fresh) > 1 else ''} of {', '.join(fresh)} start{'' if len(fresh) > 1 else 's'} "
        f"fresh, every other layer{' (and ' + ', '.join(kept) + ')' if kept else ''} from the model")
  if source.sample_rate != config.sample_rate:
    notices.append(f"--init_from={name}: trains at {config.sample_rate} Hz a model learned at {source.sample_rate} "
                   f"Hz (its filters were learned at that rate; expect it to need more steps)")
  return notices


def _estimated(config: Config) -> Tuple[str, ...]:
  """The sources that have an output convolution (all but the residual with ``difference`` output)."""
  return config.source_names[:-1] if config.output_type == "difference" else config.source_names


def fresh_outputs(source: Config, config: Config) -> Tuple[str, ...]:
  """The sources of ``config`` whose output convolution the ``source`` model has no counterpart for."""
  return tuple(s for s in _estimated(config) if s not in _estimated(source))


def copy_weights(source_model, model) -> None:
  """Assigns every weight of ``source_model`` to ``model`` (a `WaveUNet` of a config `check_config` passed),
  layer by layer and output convolution by source name; the output convolutions of new sources keep their
  fresh initialisation. Works under a distribution strategy (assigns to every replica)."""
  pairs = []
  outputs = model.structure.outputs
  for layer in model.layers:
    if layer.name == outputs:
      source_convs = {conv.name: conv for conv in source_model.get_layer(outputs).convs}
      pairs += [(source_convs[conv.name], conv) for conv in layer.convs if conv.name in source_convs]
    elif layer.weights:
      pairs.append((source_model.get_layer(layer.name), layer))
  for source_layer, layer in pairs:
    for source_weight, weight in zip(source_layer.weights, layer.weights, strict=True):
      if tuple(source_weight.shape) != tuple(weight.shape):  # check_config rules this out; a guard for callers
        raise InitFromError(f"--init_from: weight {weight.path} has shape {tuple(source_weight.shape)} in the "
                            f"source, {tuple(weight.shape)} here")
      weight.assign(np.asarray(source_weight.numpy(), dtype=weight.dtype))


def parse_freeze(value: str) -> Tuple[str, ...]:
  """The names in a ``--freeze`` value (comma-separated, spaces ignored)."""
  return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def frozen_layers(config: Config, names: Sequence[str]) -> List[str]:
  """The layers (output convolutions included, as ``outputs/<source>_conv``) that ``--freeze=names`` keeps
  fixed in a model of ``config``: ``down`` (every down convolution), ``bottleneck``, ``up`` (every learned
  upsampling weight and up convolution), ``outputs`` (the output convolutions), or any of those layers' own
  names (``down_conv_0``, ``interp_3``, ``up_conv_11``, ``outputs/vocals_conv``). `InitFromError` names an
  unknown one and lists the valid names."""
  network = structure(config)
  parts = {
      "down": [level.down_conv.layer for level in network.levels],
      "bottleneck": [network.bottleneck.layer],
      "up": [name for level in network.up_path
             for name in ((level.upsample,) if level.learned_upsampling else ()) + (level.up_conv.layer,)],
      "outputs": [conv.layer for conv in network.output_convs],
  }
  layers = [name for part in parts.values() for name in part]
  chosen = []
  for name in names:
    if name in parts:
      chosen += parts[name]
    elif name in layers:
      chosen.append(name)
    else:
      raise InitFromError(f"--freeze={','.join(names)}: no part or layer {name!r}; valid: {', '.join(PARTS)} or a "
                          f"layer name ({', '.join(sorted(layers))})")
  return list(dict.fromkeys(chosen))


def freeze(model, names: Sequence[str]) -> List[str]:
  """Makes the layers `frozen_layers` names untrainable; returns their names. Call it before the optimizer
  is built: the optimizer then has no slots for them and never updates them."""
  chosen = frozen_layers(model.wave_unet_config, names)
  outputs = model.structure.outputs
  convs = {f"{outputs}/{conv.name}": conv for conv in model.get_layer(outputs).convs}
  for name in chosen:
    layer = convs[name] if name in convs else model.get_layer(name)
    layer.trainable = False
  return chosen


@dataclasses.dataclass(frozen=True)
class Source:
  """The model a fine-tuning run starts from, as ``run_settings.json`` records it."""

  name: str
  digest: str

  def to_dict(self) -> dict:
    return {"source": self.name, "weights_sha256": self.digest}
