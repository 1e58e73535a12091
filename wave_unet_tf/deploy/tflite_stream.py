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
from wave_unet_tf.deploy.tflite import _interpreter_class, _read_metadata, _with_metadata
from wave_unet_tf.files import atomic_output

NEXT = "next_"  # output name of a state's next value: NEXT + its input name


def export_tflite_stream(model, output: str, block_frames: int) -> str:
  """Writes the streaming ``.tflite`` model of ``model`` (a `WaveUNet` with context) for blocks of
  ``block_frames`` samples at the model's rate; returns ``output``."""
  import tensorflow as tf

  from wave_unet_tf.separation.stream_graph import StreamGraph

  graph = StreamGraph(model, block_frames)
  names = graph.state_names()

  def serve(mix, *states):
    sources, next_states = graph.flat_step(mix, *states)
    outputs = dict(zip(model.wave_unet_config.source_names, sources))
    outputs.update({NEXT + name: state for name, state in zip(names, next_states)})
    return outputs

  # Keras' ExportArchive tracks the variables the endpoint reads, so the converter freezes them (a plain
  # tf.Module leaves READ_VARIABLE ops, which LiteRT cannot run).
  import keras
  archive = keras.export.ExportArchive()
  archive.add_endpoint("serving_default", serve, input_signature=graph.input_signature())
  metadata = json.dumps({"config": model.wave_unet_config.to_dict(), "stream": True,
                         "block_frames": graph.block_frames, "output_delay": graph.output_delay,
                         "states": [[name, frames, features] for name, (frames, features)
                                    in zip(names, graph.state_specs.values())]})
  with tempfile.TemporaryDirectory() as scratch:
    saved = os.path.join(scratch, "stream")
    archive.write_out(saved, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # LiteRT alone runs it
    flatbuffer = _with_metadata(converter.convert(), metadata)
  with atomic_output(output, suffix=".tflite") as tmp:
    with open(tmp, "wb") as f:
      f.write(flatbuffer)
  return output


class TFLiteStreamStep:
  """A streaming ``.tflite`` file as the step `wave_unet_tf.separation.streaming.ModelRateStream` runs.

  Attributes:
    config, block_frames, output_delay: read from the file's metadata.
  """

  def __init__(self, path: str, num_threads: int = None):
    self.path = path
    try:
      info = _read_metadata(path)
      if not info.get("stream"):
        raise ValueError("a fixed-window model, not a streaming one (export with --tflite_stream)")
      interpreter = _interpreter_class()(model_path=path, num_threads=num_threads or os.cpu_count())
      self._runner = interpreter.get_signature_runner("serving_default")
    except Exception as e:
      raise ValueError(f"{path}: not a wave-unet-tf streaming TFLite model ({e})") from None
    self.config = Config.from_dict(info["config"])
    self.block_frames, self.output_delay = int(info["block_frames"]), int(info["output_delay"])
    self._states = [(name, int(frames), int(features)) for name, frames, features in info["states"]]

  def initial_states(self):
    return [np.zeros((1, frames, features), np.float32) for _, frames, features in self._states]

  def run(self, mix, states):
    """``mix [1, block_frames, channels]`` -> ``(list of [block_frames, channels] per source, states)``."""
    outputs = self._runner(mix=np.asarray(mix, np.float32),
                           **{name: state for (name, _, _), state in zip(self._states, states)})
    return ([outputs[source][0] for source in self.config.source_names],
            [outputs[NEXT + name] for name, _, _ in self._states])
