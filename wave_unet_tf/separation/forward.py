"""The forward-pass protocol the `Separator` runs, and its implementation for Keras models.

Any object with these attributes plugs into `Separator` (a SavedModel or TFLite runner, a remote model):

    config: wave_unet_tf.Config       # rate, channels, sources, layers, context
    input_frames: int or None         # the one input length it accepts, or None: any valid length
    batch_size: int or None           # the one batch size it accepts, or None: any
    forward(mix) -> {source: array}   # mix float32 [batch, input_frames, channels] ->
                                      #   {source: float32 [batch, output_frames, channels]}, inference mode

``output_frames`` follows from ``input_frames`` and the config (`wave_unet_tf.separation.windows`).
"""

import functools
from typing import Dict, Optional, Protocol, runtime_checkable

import numpy as np

from wave_unet_tf.config import Config


@runtime_checkable
class ForwardPass(Protocol):
  """A model that separates fixed or free-length frames (see the module docstring)."""

  config: Config
  input_frames: Optional[int]
  batch_size: Optional[int]

  def forward(self, mix: np.ndarray) -> Dict[str, np.ndarray]:
    ...


class KerasForwardPass:
  """A `WaveUNet` as a `ForwardPass`: compiled once per window shape for the Keras backend
  (`wave_unet_tf.backends.inference`: ``tf.function``, ``jax.jit``, torch eager).

  Each shape is traced once (and, with ``jit_compile``, compiled by XLA once, faster than the plain
  graph on CPU and GPU); the `Separator` keeps the shape fixed for a
  whole song by padding the last window and the last batch. Context models run the equivalent polyphase
  graph (`wave_unet_tf.separation.polyphase`, fewer multiply-adds) unless ``polyphase=False``; it reads the
  model's weights at each call, so later weight changes take effect.
  """

  input_frames = None
  batch_size = None

  def __init__(self, model, jit_compile: bool = True, polyphase: bool = True):
    from wave_unet_tf.backends import inference
    from wave_unet_tf.separation import polyphase as polyphase_graph
    self.model = model
    self.config = model.wave_unet_config
    self.jit_compile = jit_compile
    self.polyphase = polyphase and polyphase_graph.supports(self.config)
    self._inference = (functools.partial(polyphase_graph.forward, model) if self.polyphase
                       else functools.partial(model, training=False))
    self._forward = inference.compile_forward(model, self._inference, jit_compile)

  def forward(self, mix: np.ndarray) -> Dict[str, np.ndarray]:
    return self._forward(np.asarray(mix, np.float32))


def as_forward_pass(model_or_path, jit_compile: bool = True) -> ForwardPass:
  """A `ForwardPass` from a path (anything `wave_unet_tf.load_model` reads), a `WaveUNet`, or an object
  that already implements the protocol."""
  model = model_or_path
  if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
    from wave_unet_tf.model_sources import load_model
    model = load_model(model)
  if _is_wave_unet(model):
    return KerasForwardPass(model, jit_compile=jit_compile)
  if isinstance(model, ForwardPass):
    return model
  raise TypeError(f"{type(model).__name__} is neither a Wave-U-Net model nor a forward pass "
                  f"(config, input_frames, batch_size, forward)")


def _is_wave_unet(model) -> bool:
  """A Keras `WaveUNet` (a torch-backend Keras model also has a ``forward``: the class decides)."""
  import sys
  if "keras" not in sys.modules:  # no Keras model can exist yet
    return False
  from wave_unet_tf.model.wave_unet import WaveUNet
  return isinstance(model, WaveUNet)
