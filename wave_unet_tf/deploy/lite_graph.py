"""The inference graph exported to TFLite: the polyphase up path (`wave_unet_tf.separation.polyphase`) in ops
that LiteRT's XNNPACK delegate runs whole, on fixed window sizes.

What kept the Keras graph well below the in-process speed under LiteRT (figures: docs/performance.md, benchmarks/export.py):
  - threads: the interpreter's default is one thread (`wave_unet_tf.deploy.tflite` now asks for one per core);
  - decimation ``x[:, ::2]``: a STRIDED_SLICE with stride 2, which XNNPACK does not take, so it runs in
    TFLite's reference kernel (several times slower than the same step as a reshape) and cuts the delegated graph into
    pieces at every level. Here the frames are paired by a reshape ``[T, F] -> [T / 2, 2F]`` and the first
    ``F`` features kept (a unit-stride slice);
  - the upsampling, concatenation and convolution of the up blocks at the high rate: here one convolution
    of the cropped skip plus one of the low-rate features with the phase-stacked kernel, then a reshape.
Every tensor is ``[batch, 1, frames, features]`` (NHWC, as CONV_2D wants it), so the convolutions need no
reshapes around them. The graph computes the model's inference-mode function (to float rounding) on the
window sizes it was traced with, in the input's dtype (float32: a mixed-precision model's weights are cast up;
the TFLite converter's float16 option halves the file instead); the outputs layer is the model's own.
"""

import tensorflow as tf

from wave_unet_tf.separation.polyphase import polyphase_kernel, supports  # noqa: F401 (supports: re-exported)


def _conv(x, layer, kernel=None):
  """``layer`` (a Keras ``Conv1D``)'s valid convolution of ``x`` ``[batch, 1, frames, features]``, without
  bias or activation; ``kernel`` ``[K, C, F]`` replaces the layer's."""
  kernel = tf.cast(layer.kernel if kernel is None else kernel, x.dtype)
  return tf.nn.conv2d(x, kernel[None], strides=1, padding="VALID")


def _activate(x, layer):
  return layer.activation(x + tf.cast(layer.bias, x.dtype))


def _frames(x):
  return x.shape[2]


def _decimate(x):
  """Every second frame, starting with the first: ``[b, 1, T, F] -> [b, 1, ceil(T / 2), F]`` by pairing
  frames with a reshape (a zero frame completes the last pair of an odd ``T``)."""
  frames, features = _frames(x), x.shape[3]
  if frames % 2:
    x = tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 0]])
  pairs = tf.reshape(x, [-1, 1, (frames + 1) // 2, 2 * features])
  return pairs[..., :features]


def _up_block(x, valid, skip, conv, keep):
  """``conv([crop(skip), upsample(x[:valid])])`` as two convolutions at the rate each tensor has (see
  `wave_unet_tf.separation.polyphase`): ``(output, output_frames)``.

  ``x`` may carry one frame beyond its ``valid`` ones: the low-rate tap it occupies (after the last valid
  frame) reaches only the odd output past the end, which the result carries on as its own extra frame
  instead of slicing it off here and padding a zero frame in at the next level (two copies per level).
  """
  kernel = tf.cast(conv.kernel, x.dtype)
  size, _, filters = kernel.shape
  skip_features = skip.shape[3]
  output_frames = 2 * valid - size  # upsampled 2 * valid - 1 frames, valid convolution
  low_rate = polyphase_kernel(kernel[:, skip_features:], tf.cast(keep, x.dtype))
  pairs = (output_frames + 1) // 2
  needed = pairs + low_rate.shape[0] - 1  # low-rate frames the phase-stacked convolution reads
  x = x[:, :, :needed] if _frames(x) > needed else tf.pad(x, [[0, 0], [0, 0], [0, needed - _frames(x)], [0, 0]])
  from_x = tf.reshape(_conv(x, conv, low_rate), [-1, 1, 2 * pairs, filters])
  # The skip frames of the outputs, and of the one beyond where the skip has it (else it is dropped).
  upsampled = 2 * valid - 1
  start = (_frames(skip) - upsampled) // 2
  frames = 2 * pairs + size - 1
  if start + frames > _frames(skip):
    frames -= 1
    from_x = from_x[:, :, :output_frames]
  from_skip = _conv(skip[:, :, start:start + frames], conv, kernel[:, :skip_features])
  return _activate(from_skip + from_x, conv), output_frames


def forward(model, mix):
  """``model``'s inference-mode outputs for ``mix`` ``[batch, frames, channels]`` (static ``frames``):
  ``{source: [batch, output_frames, channels]}``."""
  config = model.wave_unet_config
  if not supports(config):
    raise ValueError("the TFLite graph needs a context model (valid convolutions); this one has context=False")
  if mix.shape[1] is None:
    raise ValueError("the TFLite graph needs a fixed number of input frames")
  network = model.structure
  layer = model.get_layer

  skips = {}
  x = tf.expand_dims(mix, 1)  # a RESHAPE; the slice's new-axis form is left out of XNNPACK
  for level in network.levels:
    down = layer(level.down_conv.layer)
    x = skips[level.index] = _activate(_conv(x, down), down)
    x = _decimate(x)
  bottleneck = layer(network.bottleneck.layer)
  x = _activate(_conv(x, bottleneck), bottleneck)

  valid = _frames(x)
  for level in network.up_path:
    if level.learned_upsampling:
      keep = tf.sigmoid(layer(level.upsample).interp)
    else:
      keep = tf.fill([level.upsampled_features], 0.5)
    x, valid = _up_block(x, valid, skips[level.index], layer(level.up_conv.layer), keep)

  x = tf.squeeze(x[:, :, :valid], 1)
  features = layer(network.crop_concat_mix)([mix, x])
  estimates = layer(network.outputs)([features, mix], training=False)
  return dict(zip(config.source_names, estimates))
