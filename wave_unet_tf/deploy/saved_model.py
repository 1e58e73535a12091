"""SavedModel export for TensorFlow Serving, and loading one back as a forward pass `Separator` can run.

Both signatures run the inference graph `Separator` runs in process (the polyphase up path of
`wave_unet_tf.separation.polyphase`), compiled with XLA unless exported with ``xla=False``. Runtimes that
refuse XLA (TF Serving without ``--xla_cpu_compilation_enabled=true``) call their uncompiled twins
``serving_default_noxla`` and ``separate_noxla``.

Signatures:
  serving_default: ``mix`` float32 ``[batch, input_frames, channels]`` -> ``{source: [batch, output_frames,
    channels]}``; fixed window sizes, batch free: what TF Serving batches well.
  separate: ``waveform`` float32 ``[samples, channels]`` at the model's rate, any length -> ``{source:
    [samples, channels]}``; the whole song in one request, framed inside the graph on the model's
    shift-equivariance grid, so the result equals `Separator`'s.
The config (rate, channels, sources, window sizes) is the asset ``assets/wave_unet_config.json``.
"""

import functools
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from wave_unet_tf.config import Config
from wave_unet_tf.files import reporting_full_disk
from wave_unet_tf.sizes import io_sizes
from wave_unet_tf.deploy import lite_graph
from wave_unet_tf.separation import polyphase, windows

CONFIG_ASSET = "wave_unet_config.json"
PORTABLE = "_noxla"  # suffix of the uncompiled twins of the XLA-compiled signatures


def inference_function(model, input_frames=None, batch_size=None, xla: bool = True, lite: bool = False):
  """The exported forward pass as a ``tf.function`` of ``mix [batch, input_frames, channels]``.

  Context models run the polyphase graph (`wave_unet_tf.separation.polyphase`, what `Separator` runs in
  process), or with ``lite`` its TFLite form (`wave_unet_tf.deploy.lite_graph`, fixed sizes); same-padding
  models their Keras graph. ``xla`` compiles it with XLA (``jit_compile``), as `Separator` does.
  """
  config = model.wave_unet_config
  if lite and lite_graph.supports(config):
    graph = functools.partial(lite_graph.forward, model)
  elif polyphase.supports(config):
    graph = functools.partial(polyphase.forward, model)
  else:
    graph = functools.partial(model, training=False)
  spec = tf.TensorSpec([batch_size, input_frames, config.num_channels], tf.float32, "mix")
  return tf.function(lambda mix: graph(mix), input_signature=[spec], jit_compile=xla and not lite, autograph=False)


def _separate_fn(model, plan: windows.WindowPlan, xla: bool):
  """`windows.WindowPlan` in graph ops: zeros, the song, zeros; windows on the grid, each through the
  (compiled) forward pass; kept outputs tiled."""
  config = model.wave_unet_config
  one_window = inference_function(model, plan.input_frames, 1, xla)

  def keep(window):
    outputs = one_window(window[None])
    return {s: o[0, plan.keep_offset:plan.keep_offset + plan.stride] for s, o in outputs.items()}

  def separate(waveform):
    samples = tf.shape(waveform)[0]
    count = tf.maximum(1, (samples + plan.stride - 1) // plan.stride)
    padded_length = (count - 1) * plan.stride + plan.input_frames
    padded = tf.pad(waveform, [[plan.context_before, padded_length - samples - plan.context_before], [0, 0]])
    stretches = tf.signal.frame(padded, plan.input_frames, plan.stride, axis=0)  # [windows, input, channels]
    spec = {s: tf.TensorSpec([plan.stride, config.num_channels], tf.float32) for s in config.source_names}
    # One window at a time, as `Separator`: the compiled pass uses every core, and memory stays that of one.
    kept = tf.map_fn(keep, stretches, fn_output_signature=spec, parallel_iterations=1)
    return {s: tf.reshape(kept[s], [-1, config.num_channels])[:samples] for s in config.source_names}

  return tf.function(separate, input_signature=[tf.TensorSpec([None, config.num_channels], tf.float32,
                                                              "waveform")], autograph=False)


def fixed_window_plan(config: Config, window_seconds: float = None) -> windows.WindowPlan:
  """The window of a fixed-shape export: ``window_seconds`` of output, or else the training window (`io_sizes`)."""
  # A nominal long song: the window sizes do not depend on its length.
  if window_seconds is None:
    input_frames, output_frames = io_sizes(config)
    return windows.plan_windows(config, song_frames=10 * output_frames, input_frames=input_frames)
  output_frames = max(1, round(window_seconds * config.sample_rate))
  return windows.plan_windows(config, song_frames=10 * output_frames, output_frames=output_frames)


def window_info(config: Config, plan: windows.WindowPlan) -> dict:
  """What a client needs to tile a song itself: window k reads song samples from ``k * stride -
  context_before`` (zeros outside the song) and its outputs ``[keep_offset, keep_offset + stride)`` are song
  samples ``[k * stride, (k + 1) * stride)``."""
  return {"config": config.to_dict(), "input_frames": plan.input_frames, "output_frames": plan.output_frames,
          "stride": plan.stride, "context_before": plan.context_before, "keep_offset": plan.keep_offset}


def export_saved_model(model, directory: str, window_seconds: float = None, batch_size: int = None,
                       overwrite: bool = False, separate_window_seconds: float = 10.0, xla: bool = True,
                       lite: bool = False) -> windows.WindowPlan:
  """Writes ``model`` as a SavedModel with the ``serving_default`` and ``separate`` signatures.

  Args:
    model: a `WaveUNet`.
    directory: the SavedModel folder; written beside it under a temporary name and renamed, so an
      interrupted export leaves no half-written model in its place.
    window_seconds: output seconds per ``serving_default`` window; default: the training window (`io_sizes`).
    batch_size: fix ``serving_default``'s batch dimension (TFLite needs 1); None keeps it free.
    overwrite: replace an existing ``directory``.
    separate_window_seconds: output seconds per forward pass inside ``separate`` (long frames are faster).
    xla: compile both signatures with XLA (``jit_compile``): the speed of the in-process `Separator`.
      Runtimes without XLA:CPU JIT refuse to run such functions (TF Serving unless started with
      ``--xla_cpu_compilation_enabled=true``), so ``serving_default_noxla`` and ``separate_noxla`` hold the
      same graphs uncompiled. ``xla=False``: only the two signatures, uncompiled.
    lite: only ``serving_default``, in the graph's TFLite form (`lite_graph`; needs ``batch_size``): the
      input of `wave_unet_tf.deploy.tflite.convert_saved_model`.

  Returns:
    The ``serving_default`` window plan.
  """
  config = model.wave_unet_config
  directory = os.path.abspath(directory)
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f"{directory}: already exists (pass --overwrite to replace it)")
  parent = os.path.dirname(directory)
  if not os.path.isdir(parent):
    raise NotADirectoryError(f"{directory}: parent folder {parent} does not exist")
  plan = fixed_window_plan(config, window_seconds)
  separate_plan = fixed_window_plan(config, separate_window_seconds)
  # Keras' ExportArchive tracks the endpoints' variables so TFLite can freeze them (a plain tf.Module keeps
  # READ_VARIABLE ops, which LiteRT cannot run); tracking the model as well would store every weight twice.
  archive = keras.export.ExportArchive()
  endpoints = {"serving_default": inference_function(model, plan.input_frames, batch_size, xla, lite)}
  if not lite:  # a TFLite converter's input needs nothing else
    endpoints["separate"] = _separate_fn(model, separate_plan, xla)
    if xla:  # the same graphs uncompiled, for runtimes that refuse XLA (TF Serving's default)
      endpoints["serving_default" + PORTABLE] = inference_function(model, plan.input_frames, batch_size, False)
      endpoints["separate" + PORTABLE] = _separate_fn(model, separate_plan, False)
  for name, function in endpoints.items():
    function.get_concrete_function()  # traced before the archive takes it
    archive.add_endpoint(name, function)
  with reporting_full_disk(directory):
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.tmp-", dir=parent)
  try:
    with reporting_full_disk(directory):
      exported = os.path.join(staging, "saved_model")
      archive.write_out(exported, verbose=False)
      os.makedirs(os.path.join(exported, "assets"), exist_ok=True)
      with open(os.path.join(exported, "assets", CONFIG_ASSET), "w") as f:
        json.dump(window_info(config, plan), f, indent=2)
    if os.path.exists(directory):  # moved aside, not deleted in place: no half-deleted model under the name
      os.replace(directory, os.path.join(staging, "replaced"))
    os.replace(exported, directory)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return plan


class SavedModelForwardPass:
  """A loaded SavedModel's ``serving_default`` as a `wave_unet_tf.separation.forward.ForwardPass`:
  ``mix [batch, input_frames, channels]`` -> ``{source: [batch, output_frames, channels]}``."""

  batch_size = None

  def __init__(self, directory: str):
    self.path = directory
    try:
      with open(os.path.join(directory, "assets", CONFIG_ASSET)) as f:
        info = json.load(f)
      self._loaded = tf.saved_model.load(directory)
      self._forward = self._loaded.signatures["serving_default"]
      self.separate_signature = self._loaded.signatures["separate"]
    except Exception as e:
      raise ValueError(f"{directory}: not a wave-unet-tf SavedModel ({type(e).__name__}: {str(e)[:200]})") from None
    self.config = Config.from_dict(info["config"])
    self.input_frames, self.output_frames = info["input_frames"], info["output_frames"]

  def forward(self, mix):
    return {s: v.numpy() for s, v in self._forward(mix=tf.convert_to_tensor(mix, tf.float32)).items()}

