"""Separating at lower precision: ``--precision float32|float16|int8`` and ``precision=`` of `Separator` and
`StreamingSeparator`.

- ``float32`` (the default): the model as it is, in process (XLA); exact.
- ``float16``: the model converted once to TFLite with float16 weights (half the file), run by LiteRT. The
  arithmetic stays float32 on CPUs without float16 units (XNNPACK widens the weights when it loads them), so
  there it saves size and memory, not time.
- ``int8``: TFLite with dynamic-range int8 weights (a quarter of the file): LiteRT's XNNPACK kernels quantize
  each layer's input on the fly and multiply in int8, several times faster on CPUs with int8 dot products.

The conversions are the project's TFLite exports (`wave_unet_tf.deploy.tflite`, `deploy.tflite_stream`),
run on TensorFlow whatever the Keras backend (in a child process under another, `backends.tensorflow_child`),
done once per model content, precision and window (or block) and kept in the model cache
(`wave_unet_tf.model_cache.converted`). What cannot take a precision is refused in one line: a ``.tflite``
file (its precision was chosen at export), a SavedModel or another forward pass, and, for streams, a
same-padding model.

This module imports no TensorFlow: the commands declare the flag with `define_flag` before parsing.
"""

PRECISIONS = ("float32", "float16", "int8")
DEFAULT = "float32"
QUANTIZE = {"float16": "float16", "int8": "dynamic"}  # precision -> the TFLite exports' --quantize
FLAG_HELP = ("Arithmetic of the model: float32 (in process, exact), float16 (TFLite, half the size; as fast as "
             "float32 on CPUs without float16 units) or int8 (TFLite with int8 weights: faster on CPUs). The "
             "others are converted once and kept in the model cache.")


def define_flag(flag_values=None, name: str = "precision"):
  """Declares ``--precision`` (an enum of `PRECISIONS`, default float32) on ``flag_values`` (absl's global
  ``FLAGS`` by default): every command that separates declares it this way."""
  from absl import flags
  return flags.DEFINE_enum(name, DEFAULT, list(PRECISIONS), FLAG_HELP,
                           flag_values=flag_values if flag_values is not None else flags.FLAGS)


def check(precision) -> str:
  """``precision`` as one of `PRECISIONS` (None: float32); a ValueError naming it otherwise."""
  if precision is None:
    return DEFAULT
  name = str(precision).strip().lower()
  if name not in PRECISIONS:
    raise ValueError(f"--precision={precision}: choose {', '.join(PRECISIONS)}")
  return name


def _name(model_or_path):
  if isinstance(model_or_path, (str, bytes)) or hasattr(model_or_path, "__fspath__"):
    import os
    return os.fsdecode(model_or_path)
  return getattr(model_or_path, "path", None) or type(model_or_path).__name__


def keras_model(model_or_path, precision: str):
  """The `WaveUNet` that ``precision`` converts: ``model_or_path`` itself, or what `load_model` reads from it.
  A ``.tflite`` file, a SavedModel or another forward pass is refused naming it."""
  import os
  model = model_or_path
  if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
    path = os.fsdecode(model)
    if path.endswith(".tflite") and os.path.isfile(path):
      _refuse_tflite(path, precision)
    from wave_unet_tf.model_sources import load_model
    model = load_model(path)
  from wave_unet_tf.model.wave_unet import WaveUNet
  if isinstance(model, WaveUNet):
    return model
  name = _name(model_or_path)
  if name.endswith(".tflite"):
    _refuse_tflite(name, precision)
  raise ValueError(f"{name}: --precision={precision} converts a Keras model (.keras, a training folder, a TF1 "
                   f"checkpoint, a URL of one); this {type(model).__name__} runs as it is (leave out --precision)")


def _refuse_tflite(path: str, precision: str):
  from wave_unet_tf.deploy.tflite import weight_types
  try:
    quantized = sorted(weight_types(path) & {"int8", "uint8", "int16", "float16"})
  except ValueError:
    quantized = []
  what = (f"already quantized ({', '.join(quantized)} weights)" if quantized
          else "a TFLite model, whose precision was chosen when it was exported (wave-unet-export --quantize)")
  raise ValueError(f"{path}: {what}; --precision={precision} converts a Keras model (.keras, a training folder, "
                   f"a TF1 checkpoint); run this file as it is (leave out --precision)")


def forward_pass(model_or_path, precision: str, window_seconds: float):
  """The fixed-window TFLite forward pass of ``model_or_path`` at ``precision`` (float16 or int8), windows of
  ``window_seconds`` of output, converted once into the model cache."""
  from wave_unet_tf.backends import tensorflow_child
  from wave_unet_tf.deploy import tflite
  from wave_unet_tf.deploy.saved_model import fixed_window_plan
  from wave_unet_tf.model_cache import converted

  model = keras_model(model_or_path, precision)
  plan = fixed_window_plan(model.wave_unet_config, window_seconds)
  return converted(model, f"{precision}-w{plan.input_frames}", tflite.TFLiteForwardPass,
                   lambda output: tensorflow_child.call("wave_unet_tf.deploy.tflite:export_tflite", model, output,
                                                        QUANTIZE[precision], window_seconds),
                   f"{precision} (windows of {plan.input_frames} samples)")


def stream_step(model_or_path, precision: str, block_frames: int):
  """The streaming TFLite step of ``model_or_path`` at ``precision`` (float16 or int8) for blocks of
  ``block_frames`` samples, converted once into the model cache; its long delay lines stay in numpy
  (`wave_unet_tf.deploy.tflite_stream`'s ``host_delays``)."""
  from wave_unet_tf.backends import tensorflow_child
  from wave_unet_tf.deploy import tflite_stream
  from wave_unet_tf.model_cache import converted
  from wave_unet_tf.separation.stream_graph import StreamGraph

  model = keras_model(model_or_path, precision)
  try:
    StreamGraph(model, block_frames)  # a same-padding model or a block off the grid: said before converting
  except ValueError as e:
    raise ValueError(f"{_name(model_or_path)}: {e}") from None
  return converted(model, f"{precision}-stream-b{block_frames}", tflite_stream.TFLiteStreamStep,
                   lambda output: tensorflow_child.call("wave_unet_tf.deploy.tflite_stream:export_tflite_stream",
                                                        model, output, block_frames, QUANTIZE[precision],
                                                        host_delays=True),
                   f"{precision} (a stream of {block_frames}-sample blocks)")
