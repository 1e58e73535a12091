"""Wave-U-Net's building blocks as Keras 3 layers, each faithful to the original TF1 graph.

All take and return feature maps ``[batch, frames, features]`` with the frame count free (``None``), so a
model built for training frames also runs on whole-song frames.
"""

import keras
from keras import ops

PACKAGE = "wave_unet_tf"
PADDINGS = ("valid", "same")


def _check_padding(padding):
  if padding not in PADDINGS:
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
  return padding


def crop_frames(x, frames):
  """Centre-crops ``x`` ``[batch, frames', features]`` to ``frames``; an odd surplus loses its extra sample
  at the end, as the original's ``crop``."""
  surplus = ops.shape(x)[1] - frames
  start = surplus // 2
  return x[:, start:start + frames, :]


@keras.saving.register_keras_serializable(package=PACKAGE)
class Decimate(keras.layers.Layer):
  """Keeps every second frame, starting with the first: ``W -> ceil(W / 2)``.

  Input shape: ``[batch, frames, features]``. Output shape: ``[batch, ceil(frames / 2), features]``.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.input_spec = keras.layers.InputSpec(ndim=3)

  def call(self, x):
    return x[:, ::2, :]

  def compute_output_shape(self, input_shape):
    frames = input_shape[1]
    return (input_shape[0], None if frames is None else (frames + 1) // 2, input_shape[2])


def _upsampled_length(frames, padding):
  if frames is None:
    return None
  return 2 * frames - 1 if padding == "valid" else 2 * frames


@keras.saving.register_keras_serializable(package=PACKAGE)
class LinearUpsample(keras.layers.Layer):
  """Doubles the frame rate by linear interpolation.

  ``padding="valid"`` (with context): ``W -> 2W - 1``, new frames are midpoints of their neighbours (TF1
  ``resize_bilinear(align_corners=True)``). ``padding="same"``: ``W -> 2W`` as TF1 ``resize_bilinear`` with
  ``align_corners=False``; the last new frame repeats the last input frame.

  Input shape: ``[batch, W, features]``. Output shape: ``[batch, 2W - 1 or 2W, features]``.

  >>> LinearUpsample("valid")(np.array([[[0.], [2.], [4.]]])).numpy().ravel()
  array([0., 1., 2., 3., 4.], dtype=float32)
  """

  def __init__(self, padding="valid", **kwargs):
    super().__init__(**kwargs)
    self.padding = _check_padding(padding)
    self.input_spec = keras.layers.InputSpec(ndim=3)

  def call(self, x):
    following = x[:, 1:, :]
    if self.padding == "same":
      following = ops.concatenate([following, x[:, -1:, :]], axis=1)
    current = x[:, :ops.shape(following)[1], :]
    return _interleave(x, current + 0.5 * (following - current), self.padding)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], _upsampled_length(input_shape[1], self.padding), input_shape[2])

  def get_config(self):
    return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LearnedUpsample(keras.layers.Layer):
  """The paper's learned upsampling: each new frame is ``sigmoid(w) * x[k] + (1 - sigmoid(w)) * x[k+1]``
  with one weight ``w`` per feature.

  ``padding="valid"``: ``W -> 2W - 1``. ``padding="same"``: ``W -> 2W``, the last new frame interpolates
  towards zero (``sigmoid(w) * x[W-1]``), as the original's zero-padded convolution.

  Input shape: ``[batch, W, features]``. Output shape: ``[batch, 2W - 1 or 2W, features]``.
  """

  def __init__(self, padding="valid", **kwargs):
    super().__init__(**kwargs)
    self.padding = _check_padding(padding)
    self.input_spec = keras.layers.InputSpec(ndim=3)

  def build(self, input_shape):
    features = input_shape[-1]
    if features is None:
      raise ValueError(f"LearnedUpsample needs a known feature dimension, got input shape {input_shape}")
    self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: features})
    # Named as the original's per-level variable; TF1's get_variable default was Glorot uniform.
    self.interp = self.add_weight(name="interp", shape=(features,), initializer="glorot_uniform")

  def call(self, x):
    weight = ops.sigmoid(ops.cast(self.interp, x.dtype))
    following = x[:, 1:, :]
    if self.padding == "same":
      following = ops.concatenate([following, ops.zeros_like(x[:, -1:, :])], axis=1)
    current = x[:, :ops.shape(following)[1], :]
    return _interleave(x, weight * current + (1.0 - weight) * following, self.padding)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], _upsampled_length(input_shape[1], self.padding), input_shape[2])

  def get_config(self):
    return {**super().get_config(), "padding": self.padding}


def _interleave(x, between, padding):
  """``[x0, b0, x1, b1, ...]``: ``between`` has ``W - 1`` frames (valid, ends on ``x[W-1]``) or ``W`` (same)."""
  batch, features = ops.shape(x)[0], ops.shape(x)[2]
  if padding == "same":
    pairs = ops.stack([x, between], axis=2)
    return ops.reshape(pairs, (batch, 2 * ops.shape(x)[1], features))
  pairs = ops.stack([x[:, :-1, :], between], axis=2)
  body = ops.reshape(pairs, (batch, 2 * ops.shape(between)[1], features))
  return ops.concatenate([body, x[:, -1:, :]], axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropConcat(keras.layers.Layer):
  """Centre-crops the first input to the second's length and concatenates ``[cropped, second]``.

  Inputs: ``[skip [batch, W1, F1], x [batch, W2, F2]]`` with ``W1 >= W2``.
  Output shape: ``[batch, W2, F1 + F2]``. An odd surplus ``W1 - W2`` loses its extra frame at the end.
  """

  def call(self, inputs):
    skip, x = inputs
    return ops.concatenate([crop_frames(skip, ops.shape(x)[1]), x], axis=-1)

  def compute_output_shape(self, input_shapes):
    skip_shape, x_shape = input_shapes
    return (x_shape[0], x_shape[1], skip_shape[2] + x_shape[2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class SourceOutputs(keras.layers.Layer):
  """One waveform per source from the final features.

  ``direct``: a ``kernel_size`` convolution per source. ``difference``: a convolution per source but the
  last, which is the centre-cropped input mix minus the others. ``tanh`` activation, or ``linear`` with the
  original's ``AudioClip``: clipped to [-1, 1] at inference only; the difference source is clipped likewise.

  Inputs: ``[features [batch, W, F], mix [batch, W_mix, channels]]``.
  Output: a list, one ``[batch, W', channels]`` per source in ``source_names`` order, ``W' = W`` with
  ``same`` padding and ``W - kernel_size + 1`` with ``valid``.
  """

  def __init__(self, source_names, num_channels, output_type="difference", activation="tanh", kernel_size=1,
               padding="valid", **kwargs):
    super().__init__(**kwargs)
    if output_type not in ("direct", "difference"):
      raise ValueError(f"output_type must be 'direct' or 'difference', got {output_type!r}")
    if activation not in ("tanh", "linear"):
      raise ValueError(f"activation must be 'tanh' or 'linear', got {activation!r}")
    if output_type == "difference" and len(source_names) < 2:
      raise ValueError(f"difference output needs at least two sources, got {list(source_names)}")
    self.source_names = list(source_names)
    self.num_channels = int(num_channels)
    self.output_type = output_type
    self.activation = activation
    self.kernel_size = int(kernel_size)
    self.padding = _check_padding(padding)
    estimated = self.source_names[:-1] if output_type == "difference" else self.source_names
    self.convs = [
        keras.layers.Conv1D(self.num_channels, self.kernel_size, padding=self.padding, activation=activation,
                            dtype=self.dtype_policy, name=f"{name}_conv") for name in estimated]

  def build(self, input_shapes):
    features_shape, _ = input_shapes
    for conv in self.convs:
      conv.build(features_shape)

  def call(self, inputs, training=False):
    features, mix = inputs
    outputs = [conv(features) for conv in self.convs]
    if self.activation == "linear" and not training:
      outputs = [ops.clip(o, -1.0, 1.0) for o in outputs]
    if self.output_type == "difference":
      # Two centre crops, as the original: mix to the features, then to the outputs. With odd surpluses
      # this differs from one crop of the mix to the outputs.
      mix = crop_frames(crop_frames(ops.cast(mix, outputs[0].dtype), ops.shape(features)[1]), ops.shape(outputs[0])[1])
      residual = mix - sum(outputs)
      outputs.append(residual if training else ops.clip(residual, -1.0, 1.0))
    return outputs

  def compute_output_shape(self, input_shapes):
    features_shape, _ = input_shapes
    frames = features_shape[1]
    if frames is not None and self.padding == "valid":
      frames -= self.kernel_size - 1
    return [(features_shape[0], frames, self.num_channels) for _ in self.source_names]

  def get_config(self):
    return {**super().get_config(), "source_names": self.source_names, "num_channels": self.num_channels,
            "output_type": self.output_type, "activation": self.activation, "kernel_size": self.kernel_size,
            "padding": self.padding}
