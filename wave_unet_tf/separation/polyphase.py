"""A faster inference graph for context models: upsampling folded into the up path's convolutions.

Each up block of a Wave-U-Net doubles the frame rate by interpolation, concatenates a cropped skip and
convolves: ``conv([skip, upsample(x)], W)``. The convolution is linear, so it splits into
``conv(skip, W_skip) + conv(upsample(x), W_up)``, and because every interpolated frame is a fixed mix of
its two neighbours (``s * x[k] + (1 - s) * x[k + 1]``; ``s = 1/2`` for linear upsampling), the second term
is a convolution over ``x`` itself at the low rate, with one kernel per output phase (even and odd output
frames). Stacking the two phases' kernels along the output features makes it a single convolution whose
``[frames, 2 * F]`` result is the interleaved ``[2 * frames, F]`` output after a free reshape.

Same function as the `WaveUNet` in inference mode (``training=False``), to float rounding (~1e-7), with
a fifth fewer multiply-adds on the upsampled features and no upsampled or concatenated tensors to write: the
`Separator`'s forward pass for models with context (valid convolutions). Same-padding models (M1, M2) zero
the upsampled frames at the edges, which does not fold, and run the Keras graph. Written in ``keras.ops``, so
it runs on every backend (and in TensorFlow's exports, `wave_unet_tf.deploy`).
"""

import keras
import numpy as np
from keras import ops

from wave_unet_tf.model.layers import crop_frames


def supports(config) -> bool:
  """Whether `forward` computes this model: valid convolutions (``context``)."""
  return config.context


def _tap_weights(size):
  """``(fixed, per_keep)``, each ``[2, Q, K]``: upsampled-frame kernel tap ``t`` contributes
  ``fixed + keep * per_keep`` to low-rate tap ``q`` of output phase ``r`` (0: even output frames)."""
  taps = (size + 1) // 2 + 1
  fixed, per_keep = np.zeros((2, 2, taps, size), np.float32)
  for phase in range(2):
    for t in range(size):
      frame = phase + t  # in upsampled frames, counted from x[m] at frame 2m
      if frame % 2 == 0:
        fixed[phase, frame // 2, t] += 1  # an original frame
      else:  # keep * x[k] + (1 - keep) * x[k + 1]
        per_keep[phase, frame // 2, t] += 1
        fixed[phase, frame // 2 + 1, t] += 1
        per_keep[phase, frame // 2 + 1, t] -= 1
  return fixed, per_keep


def polyphase_kernel(kernel, keep):
  """The kernel over the low-rate ``x`` that equals ``kernel`` over ``upsample(x)``.

  Args:
    kernel: ``[K, C, F]``, convolving the upsampled features (valid, frames ``[x0, m0, x1, m1, ...]``
      with ``m_k = keep * x[k] + (1 - keep) * x[k + 1]``).
    keep: ``[C]``, the weight of the earlier neighbour in each interpolated frame.

  Returns:
    ``[Q, C, 2 * F]`` with ``Q = (K + 1) // 2 + 1``: output features ``[:F]`` are the even output frames,
    ``[F:]`` the odd ones.
  """
  size, channels, filters = kernel.shape
  dtype = keras.backend.standardize_dtype(kernel.dtype)
  fixed, per_keep = (ops.convert_to_tensor(taps, dtype) for taps in _tap_weights(size))
  folded = (ops.einsum("rqt,tcf->qcrf", fixed, kernel)
            + keep[:, None, None] * ops.einsum("rqt,tcf->qcrf", per_keep, kernel))
  return ops.reshape(folded, [fixed.shape[1], channels, 2 * filters])


def _conv(x, kernel):
  return ops.conv(x, kernel, strides=1, padding="valid")


def _up_block(x, skip, conv, keep):
  """``conv([crop(skip), upsample(x)])`` without the upsampled or concatenated tensor; ``conv`` is the
  block's Keras ``Conv1D``, whose weights, compute dtype and activation it uses."""
  kernel, bias = ops.cast(conv.kernel, conv.compute_dtype), ops.cast(conv.bias, conv.compute_dtype)
  size, _, filters = kernel.shape
  skip_features = skip.shape[-1]
  frames = ops.shape(x)[1]
  output_frames = 2 * frames - size  # upsampled 2W - 1 frames, valid convolution
  from_skip = _conv(crop_frames(skip, 2 * frames - 1), kernel[:, :skip_features])
  low_rate = polyphase_kernel(kernel[:, skip_features:], ops.cast(keep, conv.compute_dtype))
  # Both phases over the same low-rate frames; one frame of zeros keeps the last even output in range
  # (its odd partner, past the end, is dropped).
  pairs = (output_frames + 1) // 2
  padded = ops.pad(x, [[0, 0], [0, pairs + low_rate.shape[0] - 1 - frames], [0, 0]])
  from_x = ops.reshape(_conv(padded, low_rate), [ops.shape(x)[0], -1, filters])[:, :output_frames]
  return conv.activation(from_skip + from_x + bias)


def forward(model, mix):
  """``model``'s inference-mode outputs for ``mix`` ``[batch, frames, channels]``: ``{source: tensor}``.

  Walks ``model.structure``: the down path, the bottleneck and the outputs are the model's own layers;
  only the up blocks are rewritten."""
  config = model.wave_unet_config
  if not supports(config):
    raise ValueError("polyphase forward needs a context model (valid convolutions); this one has context=False")
  network = model.structure
  layer = model.get_layer

  skips = {}
  x = mix
  for level in network.levels:
    x = skips[level.index] = layer(level.down_conv.layer)(x)
    x = layer(level.decimate)(x)
  x = layer(network.bottleneck.layer)(x)

  for level in network.up_path:
    if level.learned_upsampling:
      keep = ops.sigmoid(layer(level.upsample).interp)
    else:
      keep = ops.full([level.upsampled_features], 0.5)
    x = _up_block(x, skips[level.index], layer(level.up_conv.layer), keep)

  features = layer(network.crop_concat_mix)([mix, x])
  estimates = layer(network.outputs)([features, mix], training=False)
  return dict(zip(config.source_names, estimates))
