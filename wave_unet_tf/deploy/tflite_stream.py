"""A streaming TFLite model (one block in, one block of every source out, the cached features as explicit
state tensors in and out) and the runner that streams with it under the standalone LiteRT interpreter.

The step (`wave_unet_tf.separation.stream_graph`) is saved as a SavedModel with fixed shapes and converted
from there: builtin ops only, weights folded into constants (so no resource variables reach the
interpreter). The model's config, block size, output delay and state shapes travel in the file's metadata,
so `wave_unet_tf.StreamingSeparator` streams with the file alone.

Signature ``serving_default``: inputs ``mix`` float32 ``[1, block_frames, channels]`` and one
``state_<name>`` ``[1, frames, features]`` per cache; outputs one ``[1, block_frames, channels]`` per
source and ``next_state_<name>`` for each cache, to feed back in with the next block (zeros at the start).
"""

import json
import os
import tempfile

import numpy as np

from wave_unet_tf.config import Config
from wave_unet_tf.deploy.tflite import _read_metadata, _with_metadata, convert_with
from wave_unet_tf.files import atomic_output

NEXT = "next_"  # output name of a state's next value: NEXT + its input name
WINDOW, NEW = "window_", "new_"  # a host delay line's window (input) and new frames (output): prefix + its name


def _tensor_name(prefix, name):
  return prefix + "".join(c if c.isalnum() else "_" for c in name)


def export_tflite_stream(model, output: str, block_frames: int, quantize: str = "none",
                         host_delays: bool = False) -> str:
  """Writes the streaming ``.tflite`` model of ``model`` (a `WaveUNet` with context) for blocks of
  ``block_frames`` samples at the model's rate, its weights float32 or ``quantize``d as
  `wave_unet_tf.deploy.tflite.convert_with` does (``float16``, ``dynamic``-range int8); returns ``output``.

  ``host_delays``: the long delay lines stay with the runner (`StreamGraph`'s ``host_delays``): the step
  takes each one's window as ``window_<name>`` ``[1, width, features]`` and returns its new frames as
  ``new_<name>`` ``[1, frames, features]``, instead of carrying millions of floats in and out of the
  interpreter every block (what the self-contained step does; `TFLiteStreamStep` runs both)."""
  import tensorflow as tf

  from wave_unet_tf.separation.stream_graph import StreamGraph

  graph = StreamGraph(model, block_frames, host_delays=host_delays)
  names = graph.state_names()
  lines = list(graph.delay_specs.items())
  window_names = [_tensor_name(WINDOW, name) for name, _ in lines]

  def serve(mix, *tensors):
    states, windows = list(tensors[:len(names)]), list(tensors[len(names):])
    sources, next_states, new_frames = graph.step(mix, states, windows)
    outputs = {source: tf.cast(x, tf.float32) for source, x in zip(model.wave_unet_config.source_names, sources)}
    outputs.update({NEXT + name: tf.cast(state, tf.float32) for name, state in zip(names, next_states)})
    outputs.update({_tensor_name(NEW, name): tf.cast(x, tf.float32) for (name, _), x in zip(lines, new_frames)})
    return outputs

  signature = [tf.TensorSpec([1, graph.block_frames, graph.config.num_channels], tf.float32, name="mix")]
  signature += [tf.TensorSpec([1, frames, features], tf.float32, name=name)
                for (frames, features), name in zip(graph.state_specs.values(), names)]
  signature += [tf.TensorSpec([1, spec.width, spec.features], tf.float32, name=name)
                for (_, spec), name in zip(lines, window_names)]
  # Keras' ExportArchive tracks the variables the endpoint reads, so the converter freezes them (a plain
  # tf.Module leaves READ_VARIABLE ops, which LiteRT cannot run).
  import keras
  archive = keras.export.ExportArchive()
  archive.add_endpoint("serving_default", serve, input_signature=signature)
  metadata = {"config": model.wave_unet_config.to_dict(), "stream": True,
              "block_frames": graph.block_frames, "output_delay": graph.output_delay,
              "states": [[name, frames, features] for name, (frames, features)
                         in zip(names, graph.state_specs.values())]}
  if lines:
    metadata["delays"] = [[_tensor_name("", name), spec.lag, spec.width, spec.frames, spec.features]
                          for name, spec in lines]
  with tempfile.TemporaryDirectory() as scratch:
    saved = os.path.join(scratch, "stream")
    archive.write_out(saved, verbose=False)
    flatbuffer = _with_metadata(convert_with(saved, quantize), json.dumps(metadata))
  with atomic_output(output, suffix=".tflite") as tmp:
    with open(tmp, "wb") as f:
      f.write(flatbuffer)
  return output


class TFLiteStreamStep:
  """A streaming ``.tflite`` file as the step `wave_unet_tf.separation.streaming.ModelRateStream` runs.

  A file exported with ``host_delays`` leaves its long delay lines here: each block's new frames of them
  are kept (as they came out, for as many blocks as the longest line's lag) and each window is cut from
  them (`wave_unet_tf.separation.stream_graph.window_pieces`).

  Attributes:
    config, block_frames, output_delay: read from the file's metadata.
  """

  def __init__(self, path: str, num_threads: int = None):
    from wave_unet_tf.deploy.tflite import default_threads, new_interpreter
    from wave_unet_tf.separation.stream_graph import DelaySpec, window_pieces

    self.path = path
    try:
      info = _read_metadata(path)
      if not info.get("stream"):
        raise ValueError("a fixed-window model, not a streaming one (export with --tflite_stream)")
      interpreter = new_interpreter(path, num_threads or default_threads())
      self._runner = interpreter.get_signature_runner("serving_default")
    except Exception as e:
      raise ValueError(f"{path}: not a wave-unet-tf streaming TFLite model ({e})") from None
    self.config = Config.from_dict(info["config"])
    self.block_frames, self.output_delay = int(info["block_frames"]), int(info["output_delay"])
    self._states = [(name, int(frames), int(features)) for name, frames, features in info["states"]]
    self._lines = [(name, DelaySpec(*map(int, spec))) for name, *spec in info.get("delays", [])]
    self._pieces = [window_pieces(spec) for _, spec in self._lines]
    self._kept = max((back for pieces in self._pieces for back, _, _ in pieces), default=0)

  def initial_states(self):
    """The states, and the delay lines' new frames of the last blocks (newest first), all zeros."""
    states = [np.zeros((1, frames, features), np.float32) for _, frames, features in self._states]
    if not self._lines:
      return states
    silence = [np.zeros((1, spec.frames, spec.features), np.float32) for _, spec in self._lines]
    return states, (silence,) * self._kept

  def run(self, mix, states):
    """``mix [1, block_frames, channels]`` -> ``(list of [block_frames, channels] per source, states)``."""
    inputs = {"mix": np.asarray(mix, np.float32)}
    if self._lines:
      states, recent = states
      for line, ((name, _), pieces) in enumerate(zip(self._lines, self._pieces)):
        parts = [recent[back - 1][line][:, first:first + count] for back, first, count in pieces]
        inputs[WINDOW + name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    inputs.update({name: state for (name, _, _), state in zip(self._states, states)})
    outputs = self._runner(**inputs)
    sources = [outputs[source][0] for source in self.config.source_names]
    next_states = [outputs[NEXT + name] for name, _, _ in self._states]
    if not self._lines:
      return sources, next_states
    new_frames = [outputs[NEW + name] for name, _ in self._lines]
    return sources, (next_states, ((new_frames,) + recent)[:self._kept])
