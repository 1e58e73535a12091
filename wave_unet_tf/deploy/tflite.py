"""TFLite models of the fixed-window forward pass, and a runner that separates whole songs with them.

The model is converted from a SavedModel whose ``serving_default`` has a fixed input shape, which gives
builtin ops only, so it runs under the standalone LiteRT interpreter (``ai-edge-litert``) without TensorFlow.
`export_tflite` converts the graph of `wave_unet_tf.deploy.lite_graph`, which LiteRT's XNNPACK delegate runs
whole; the runner gives the interpreter one thread per core (LiteRT's default is one).
"""

import json
import os
import tempfile
import warnings

import numpy as np

from wave_unet_tf.config import Config
from wave_unet_tf.files import atomic_output, reporting_full_disk

QUANTIZATIONS = ("none", "float16", "dynamic")
CONFIG_METADATA = "wave_unet_config"  # TFLite metadata entry holding the config and window sizes as JSON


def export_tflite(model, output: str, quantize: str = "none", window_seconds: float = None) -> str:
  """Writes ``model``'s forward pass on fixed windows of ``window_seconds`` of output (default: the training
  window) as a ``.tflite`` file: the graph of `wave_unet_tf.deploy.lite_graph`, through a temporary SavedModel."""
  from wave_unet_tf.deploy import saved_model

  if quantize not in QUANTIZATIONS:
    raise ValueError(f"--quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)}")
  with reporting_full_disk(output), tempfile.TemporaryDirectory(
      prefix=".tflite-export-", dir=os.path.dirname(os.path.abspath(output))) as scratch:
    fixed = os.path.join(scratch, "fixed")
    saved_model.export_saved_model(model, fixed, window_seconds, batch_size=1, xla=False, lite=True)
    return convert_saved_model(fixed, output, quantize)


def convert_saved_model(saved_model_dir: str, output: str, quantize: str = "none") -> str:
  """Converts a fixed-window SavedModel's ``serving_default`` (`saved_model.export_saved_model` with
  ``batch_size=1``, best with ``lite=True``) into a ``.tflite`` file: float32, ``float16`` weights or
  ``dynamic``-range int8 weights."""
  from wave_unet_tf.deploy.saved_model import CONFIG_ASSET

  flatbuffer = convert_with(saved_model_dir, quantize)
  with open(os.path.join(saved_model_dir, "assets", CONFIG_ASSET)) as f:
    metadata = f.read()
  flatbuffer = _with_metadata(flatbuffer, metadata)
  with atomic_output(output, suffix=".tflite") as tmp:
    with open(tmp, "wb") as f:
      f.write(flatbuffer)
  return output


def convert_with(saved_model_dir: str, quantize: str = "none") -> bytes:
  """The TFLite flatbuffer of a fixed-shape SavedModel's ``serving_default``: builtin ops only (no Select TF
  ops: LiteRT alone runs it), weights float32, ``float16`` or ``dynamic``-range int8."""
  import tensorflow as tf

  if quantize not in QUANTIZATIONS:
    raise ValueError(f"--quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)}")
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  return converter.convert()


def _with_metadata(flatbuffer: bytes, text: str) -> bytes:
  """Stores the config JSON in the model's metadata, so a ``.tflite`` file alone is enough to separate."""
  from tensorflow.lite.python import schema_py_generated as schema
  import flatbuffers

  model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(text.encode(), np.uint8)
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name = CONFIG_METADATA
  entry.buffer = len(model.buffers) - 1
  model.metadata = (model.metadata or []) + [entry]
  builder = flatbuffers.Builder(1024)
  builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
  return bytes(builder.Output())


def _read_metadata(path: str) -> dict:
  from tensorflow.lite.python import schema_py_generated as schema

  with open(path, "rb") as f:
    data = f.read()
  model = schema.Model.GetRootAsModel(data, 0)
  for i in range(model.MetadataLength()):
    entry = model.Metadata(i)
    if entry.Name().decode() == CONFIG_METADATA:
      return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
  raise ValueError(f"{path}: a TFLite model without the wave_unet_config metadata (export it with wave-unet-export)")


def weight_types(path: str) -> set:
  """The element types of a ``.tflite`` file's constant tensors (its weights): ``{"float32"}`` for a float
  model, with ``"int8"`` or ``"float16"`` for a quantized one. ValueError if it does not read."""
  from tensorflow.lite.python import schema_py_generated as schema

  names = {value: name.lower() for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
  try:
    with open(path, "rb") as f:
      model = schema.Model.GetRootAsModel(f.read(), 0)
    types = set()
    for g in range(model.SubgraphsLength()):
      graph = model.Subgraphs(g)
      for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        if tensor.Buffer() and model.Buffers(tensor.Buffer()).DataLength():
          types.add(names.get(tensor.Type(), str(tensor.Type())))
  except Exception as e:
    raise ValueError(f"{path}: not a TFLite model ({e})") from None
  return types


def new_interpreter(path: str, num_threads: int):
  """LiteRT's interpreter (``ai-edge-litert``) for ``path``, else TensorFlow's bundled one, which does the same
  job but warns on every construction that it is deprecated: in the Python API as in the commands, that warning
  is not the user's concern, so it is not shown."""
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    from tensorflow.lite.python.interpreter import Interpreter
  from wave_unet_tf.runtime import native_logs_filtered
  with warnings.catch_warnings(), native_logs_filtered():  # and LiteRT's line as it applies XNNPACK
    warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    interpreter.allocate_tensors()
  return interpreter


def default_threads() -> int:
  """The CPU cores this process may run on (its affinity), at least 1."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


class TFLiteForwardPass:
  """An exported ``.tflite`` model as a `wave_unet_tf.separation.forward.ForwardPass`: one fixed-size window
  ``[1, input_frames, channels]`` per call, so `Separator` separates whole songs with it.

  Attributes:
    config: the model's `Config`.
    input_frames, output_frames: the fixed window sizes.
    num_threads: the interpreter's threads (default: one per core, `default_threads`).
  """

  batch_size = 1

  def __init__(self, path: str, num_threads: int = None):
    self.path = path
    # LiteRT's default is one thread; the convolutions (XNNPACK) scale with the cores this process may use.
    self.num_threads = num_threads or default_threads()
    try:
      info = _read_metadata(path)
      self._runner = new_interpreter(path, self.num_threads).get_signature_runner("serving_default")
    except Exception as e:
      raise ValueError(f"{path}: not a wave-unet-tf TFLite model ({e})") from None
    self.config = Config.from_dict(info["config"])
    self.input_frames, self.output_frames = info["input_frames"], info["output_frames"]

  def forward(self, mix):
    """``mix [1, input_frames, channels]`` -> ``{source: [1, output_frames, channels]}``."""
    return self._runner(mix=np.asarray(mix, np.float32))
