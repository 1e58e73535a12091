"""The streaming step of a Wave-U-Net: one block of input in, one block of every source out, with each
level's features cached between blocks so no level recomputes what an earlier block computed.

Built by walking ``model.structure`` and calling the model's own layers (no second model). Every tensor of
the network is treated as a stream of frames at its level's rate; a block brings ``block_frames / 2**l``
new frames to level ``l``. Each operation keeps, as explicit state tensors, the frames of earlier blocks it
still needs:

- a valid convolution of kernel ``K`` keeps its last ``K - 1`` input frames, so ``[cache, new]`` yields
  exactly the new output frames;
- decimation keeps every second frame; blocks sit on the ``2**num_layers`` grid, so each block has an even
  number of frames at every level above the bottleneck and the kept phase is fixed;
- upsampling keeps its last input frame (each interpolated frame needs its earlier neighbour);
- crop-and-concat delays the skip (or the upsampled features) by a fixed number of frames.

Stream frame ``s`` of a tensor holds frame ``s - delay`` of the same tensor in one whole-song forward pass
(frames before ``delay`` come from the zero-initialised caches and are discarded). The delays and the crop
offsets are fixed numbers, derived here from the kernel sizes by the same walk. So with the stream fed the
padded song (``model_context(config)[0]`` zeros, then the song), output stream frame ``s`` is song sample
``s - output_delay``, equal to the whole-song pass to float rounding.

The state travels in and out of the step as tensors (``[1, frames, features]`` each): the step is a pure
function, converted as it is to a TFLite model with builtin ops only. In-process (compiled with XLA) the
long delay lines stay outside it (``host_delays``, `window_pieces`): a fine level's skip waits for the
whole network's latency, and copying such a line in and out of the step costs each block as much as the
line is long, where reading its window costs as much as the block is long.
Same-padding models (M1, M2) zero-pad every window's edges and are not shift-exact; they are refused.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from wave_unet_tf.sizes import grid, sizes_for_bottleneck

# 93 ms at 44.1 kHz: M5-HighSR streams it several times faster than real time. The streaming API and the
# --block_frames flag of wave-unet-export share it (this module imports no TensorFlow, so --help stays fast).
DEFAULT_BLOCK_FRAMES = 4096


# A delay line at least this long (frames x features) is kept by the host, when the step lets it: the skips
# of the fine levels wait for the whole network's latency (M5-HighSR: 6.5 million floats in all), and
# copying them through the step every block costs more than the block's convolutions at small blocks.
HOST_DELAY_FLOATS = 1 << 16


@dataclasses.dataclass(frozen=True)
class DelaySpec:
  """A delay line kept by the host: each block reads ``width`` frames from ``lag`` frames back (``lag >=
  width``: all from earlier blocks) and appends its ``frames`` new frames of ``features``."""

  lag: int
  width: int
  frames: int
  features: int


@dataclasses.dataclass(frozen=True)
class Stream:
  """One tensor of the network as a stream.

  Attributes:
    tensor: ``[1, frames, features]`` new frames of this block (None while planning).
    delay: stream frame ``s`` holds frame ``s - delay`` of the whole-song tensor.
    frames: new frames per block.
    features: its last dimension.
    length: its length in a whole-song pass over a reference valid input (gives the crop offsets).
  """

  tensor: object
  delay: int
  frames: int
  features: int
  length: int


class _Walk:
  """Runs (or, with ``states`` None, only plans) the streaming ops, collecting the state they keep."""

  def __init__(self, states: Optional[Dict[str, object]] = None, folded: Optional[Dict[str, tuple]] = None,
               fold_upsampling: bool = True, host_delays: bool = False, windows: Optional[Dict[str, object]] = None):
    self.states = states
    self.fold_upsampling = fold_upsampling
    self.folded = folded or {}  # up block name -> `fold_up_kernels`, computed once outside the step
    self.specs: Dict[str, Tuple[int, int]] = {}  # state name -> (frames, features), in walk order
    self.next_states: Dict[str, object] = {}
    self.host_delays = host_delays
    self.delay_specs: Dict[str, DelaySpec] = {}  # delay lines the host keeps, in walk order
    self.windows = windows  # delay line name -> the frames this block reads from it (given by the host)
    self.new_frames: Dict[str, object] = {}  # delay line name -> this block's new frames (for the host to keep)

  @property
  def planning(self):
    return self.states is None

  def _cached(self, name, stream: Stream, frames: int):
    """``[earlier `frames` frames, new frames]``; keeps the last ``frames`` frames for the next block."""
    if frames == 0:
      return stream.tensor
    if name in self.specs:
      raise ValueError(f"two states named {name!r}")
    self.specs[name] = (frames, stream.features)
    if self.planning:
      return None
    from keras import ops
    joined = ops.concatenate([ops.cast(self.states[name], stream.tensor.dtype), stream.tensor], axis=1)
    self.next_states[name] = joined[:, stream.frames:]
    return joined

  def _window(self, name, stream: Stream, lag: int, width: int):
    """Stream frames ``t - lag .. t - lag + width - 1``, ``t`` the block's first new frame. A long delay line
    is kept by the host when it may (``host_delays``): the step then reads only the window it needs and hands
    back its new frames, instead of copying the whole line in and out every block."""
    if self.host_delays and lag >= width and lag * stream.features >= HOST_DELAY_FLOATS:
      if name in self.delay_specs or name in self.specs:
        raise ValueError(f"two states named {name!r}")
      self.delay_specs[name] = DelaySpec(lag, width, stream.frames, stream.features)
      if self.planning:
        return None
      self.new_frames[name] = stream.tensor
      from keras import ops
      return ops.cast(self.windows[name], stream.tensor.dtype)
    joined = self._cached(name, stream, lag)
    return None if self.planning else joined[:, :width]

  def conv(self, name, layer, kernel_size: int, filters: int, stream: Stream) -> Stream:
    """A valid convolution (``layer``, a Keras ``Conv1D``) over the stream."""
    return self.convs(name, [layer], kernel_size, filters, stream)[0]

  def convs(self, name, layers, kernel_size: int, filters: int, stream: Stream) -> List[Stream]:
    """Valid convolutions of one kernel size over the same stream (one cache for all of them)."""
    joined = self._cached(name, stream, kernel_size - 1)
    return [Stream(None if self.planning else layer(joined), stream.delay + kernel_size - 1, stream.frames,
                   filters, stream.length - kernel_size + 1) for layer in layers]

  def decimate(self, stream: Stream) -> Stream:
    """Keeps the whole-song tensor's even frames: the phase is fixed because blocks sit on the grid."""
    if stream.frames % 2:
      raise ValueError(f"{stream.frames} frames per block cannot be decimated: blocks must be on the grid")
    phase = stream.delay % 2
    tensor = None if self.planning else stream.tensor[:, phase::2]
    return Stream(tensor, (stream.delay - phase) // 2, stream.frames // 2, stream.features, (stream.length + 1) // 2)

  def upsample(self, name, stream: Stream, keep) -> Stream:
    """``W -> 2W - 1`` interpolation: stream frame ``2s`` is ``keep * x[s - 1] + (1 - keep) * x[s]``, frame
    ``2s + 1`` is ``x[s]`` (so one earlier frame is cached)."""
    joined = self._cached(name, stream, 1)
    tensor = None
    if not self.planning:
      from keras import ops
      earlier, current = joined[:, :-1], joined[:, 1:]
      keep = ops.cast(keep, current.dtype)
      between = keep * earlier + (1.0 - keep) * current
      tensor = ops.reshape(ops.stack([between, current], axis=2), [1, 2 * stream.frames, stream.features])
    return Stream(tensor, 2 * stream.delay + 1, 2 * stream.frames, stream.features, 2 * stream.length - 1)

  def align(self, name, stream: Stream, offset: int, delay: int) -> Stream:
    """The stream shifted so that frame ``s`` holds whole-song frame ``s - delay + offset``."""
    lag = delay - offset - stream.delay
    if lag < 0:
      raise ValueError(f"{name}: negative lag {lag}")
    tensor = self._window(name, stream, lag, stream.frames)
    return Stream(tensor, delay, stream.frames, stream.features, stream.length - offset)

  def crop_concat(self, name, skip: Stream, x: Stream) -> Stream:
    """``[centre-cropped skip, x]`` as `wave_unet_tf.model.layers.CropConcat`, both delayed to the later."""
    offset = (skip.length - x.length) // 2  # an odd surplus loses its extra frame at the end, as the model
    delay = max(x.delay, skip.delay + offset)
    skip = self.align(f"{name}/skip", skip, offset, delay)
    x = self.align(f"{name}/x", x, 0, delay)
    tensor = None if self.planning else _concat(skip.tensor, x.tensor)
    return Stream(tensor, delay, x.frames, skip.features + x.features, x.length)

  def up_block(self, name, x: Stream, skip: Stream, layer, kernel_size: int, filters: int, keep) -> Stream:
    """``conv([crop(skip), upsample(x)])`` (the model's up block) with the upsampling folded into the
    convolution, as `wave_unet_tf.separation.polyphase` does offline: a fifth fewer multiply-adds on the
    upsampled features and no upsampled or concatenated tensor. Falls back to the plain ops when the
    upsampled features would need a delay (not so in the paper's configs), or when asked to."""
    upsampled = Stream(None, 2 * x.delay + 1, 2 * x.frames, x.features, 2 * x.length - 1)  # as `upsample`
    offset = (skip.length - upsampled.length) // 2
    delay = max(upsampled.delay, skip.delay + offset)
    if delay != upsampled.delay or not self.fold_upsampling:
      merged = self.crop_concat(name, skip, self.upsample(name + "/upsample", x, keep))
      return self.conv(name, layer, kernel_size, filters, merged)
    # The skip's delay line and the convolution's cache are one: lag + K - 1 earlier frames.
    lag = delay - offset - skip.delay
    skip_window = self._window(f"{name}/skip", skip, lag + kernel_size - 1, upsampled.frames + kernel_size - 1)
    taps = _upsampled_taps(kernel_size)
    x_joined = self._cached(f"{name}/x", x, taps.shape[2] - 1)
    tensor = None
    if not self.planning:
      from keras import ops
      skip_kernel, low_rate, bias = self.folded[name] if name in self.folded else fold_up_kernels(
          layer, keep, skip.features)
      from_skip = ops.conv(skip_window, skip_kernel, strides=1, padding="valid")
      from_x = ops.conv(x_joined, low_rate, strides=1, padding="valid")  # [1, n, 2F]: both phases
      tensor = layer.activation(from_skip + ops.reshape(from_x, [1, upsampled.frames, filters]) + bias)
    return Stream(tensor, delay + kernel_size - 1, upsampled.frames, filters, upsampled.length - kernel_size + 1)


def fold_up_kernels(layer, keep, skip_features: int):
  """``(skip kernel [K, S, F], low-rate kernel [Q, C, 2F], bias [F])`` of an up block's ``Conv1D``: the
  part that convolves the skip, and the part over the upsampled features folded onto the low rate (output
  features ``[:F]`` the even frames, ``[F:]`` the odd)."""
  from keras import ops
  dtype = layer.compute_dtype
  kernel = ops.cast(layer.kernel, dtype)
  size, channels, filters = kernel.shape
  taps = _upsampled_taps(size)
  keep = ops.cast(keep, dtype) * ops.ones([channels - skip_features], dtype)
  fixed, per_keep = (ops.convert_to_tensor(t, dtype) for t in taps)
  upsampled = kernel[:, skip_features:]
  low_rate = (ops.einsum("rqt,tcf->qcrf", fixed, upsampled)
              + keep[:, None, None] * ops.einsum("rqt,tcf->qcrf", per_keep, upsampled))
  low_rate = ops.reshape(low_rate, [taps.shape[2], channels - skip_features, 2 * filters])
  return kernel[:, :skip_features], low_rate, ops.cast(layer.bias, dtype)


def _upsampled_taps(kernel_size: int) -> np.ndarray:
  """``[2 (fixed, per_keep), 2 (output phase), Q, K]``: upsampled-stream kernel tap ``t`` of output phase
  ``r`` contributes ``fixed + keep * per_keep`` to low-rate tap ``q`` (frames ``m - Q + 1 .. m``).

  Upsampled stream frame ``2s`` is ``keep * x[s - 1] + (1 - keep) * x[s]`` and ``2s + 1`` is ``x[s]``
  (`_Walk.upsample`); output frame ``2m + r`` reads upsampled frames ``2m + r - K + 1 .. 2m + r``."""
  lowest = (1 - kernel_size) // 2 - 1  # the earliest x frame any output reads, relative to m
  taps = np.zeros((2, 2, 1 - lowest, kernel_size), np.float32)
  for phase in range(2):
    for t in range(kernel_size):
      frame = phase - (kernel_size - 1) + t  # upsampled frame relative to 2m
      s, odd = frame // 2, frame % 2
      if odd:
        taps[0, phase, s - lowest, t] += 1
      else:  # keep * x[s - 1] + (1 - keep) * x[s] = x[s] + keep * (x[s - 1] - x[s])
        taps[0, phase, s - lowest, t] += 1
        taps[1, phase, s - 1 - lowest, t] += 1
        taps[1, phase, s - lowest, t] -= 1
  return taps


def _concat(a, b):
  from keras import ops
  return ops.concatenate([a, ops.cast(b, a.dtype)], axis=-1)


def _walk_network(model, walk: _Walk, mix: Stream):
  """Walks ``model.structure`` through ``walk``: ``(source streams in source order, output delay)``."""
  from keras import ops
  config = model.wave_unet_config
  network = model.structure
  layer = model.get_layer

  skips = {}
  x = mix
  for level in network.levels:
    conv = level.down_conv
    x = skips[level.index] = walk.conv(conv.layer, layer(conv.layer), conv.kernel_size, conv.filters, x)
    x = walk.decimate(x)
  conv = network.bottleneck
  x = walk.conv(conv.layer, layer(conv.layer), conv.kernel_size, conv.filters, x)

  for level in network.up_path:
    keep = None
    if not walk.planning:
      keep = ops.sigmoid(layer(level.upsample).interp) if level.learned_upsampling else np.float32(0.5)
    conv = level.up_conv
    x = walk.up_block(conv.layer, x, skips[level.index], layer(conv.layer), conv.kernel_size, conv.filters, keep)

  features = walk.crop_concat(network.crop_concat_mix, mix, x)
  outputs_layer = layer(network.outputs)
  spec = network.output_convs[0]
  estimated = walk.convs(network.outputs, outputs_layer.convs, spec.kernel_size, spec.filters, features)
  sources = [s.tensor for s in estimated]
  out = estimated[0]
  if not walk.planning:
    sources = [ops.cast(s, "float32") for s in sources]
    if config.output_activation == "linear":
      sources = [ops.clip(s, -1.0, 1.0) for s in sources]
  if config.output_type == "difference":
    # The model crops the mix twice (to the features, then to the outputs): the offsets add up.
    offset = (mix.length - features.length) // 2 + (features.length - out.length) // 2
    aligned = walk.align("outputs/mix", mix, offset, out.delay)
    if not walk.planning:
      residual = ops.cast(aligned.tensor, "float32") - sum(sources[1:], sources[0])
      sources.append(ops.clip(residual, -1.0, 1.0))
  return sources, out.delay


class StreamGraph:
  """The streaming step of ``model`` for blocks of ``block_frames`` samples at the model's rate.

  ``fold_upsampling=False`` runs the up blocks as the model does (upsample, crop-and-concat, convolve)
  instead of folding the upsampling into the convolution (the same result, slower). ``host_delays=True``
  leaves the long delay lines to the caller (`delay_specs`, `window_pieces`): `step` then takes the
  window each reads and returns each one's new frames as its third result.

  Attributes:
    config: the model's config.
    block_frames: input samples per step (a multiple of the grid ``2**num_layers``).
    state_specs: ``{name: (frames, features)}``, the state tensors ``[1, frames, features]`` in step order.
    delay_specs: ``{name: DelaySpec}``, the delay lines the caller keeps (none unless ``host_delays``).
    output_delay: output stream frame ``s`` of the stream holds frame ``s - output_delay`` of a whole-song
      pass over the same input stream.
  """

  def __init__(self, model, block_frames: int, fold_upsampling: bool = True, host_delays: bool = False):
    config = model.wave_unet_config
    if not config.context:
      raise ValueError("streaming needs a model with context (valid convolutions); a same-padding model "
                       "(M1, M2: context=False) pads every window's edges and is not shift-exact")
    g = grid(config)
    block_frames = int(block_frames)
    if block_frames < g or block_frames % g:
      raise ValueError(f"block_frames={block_frames}: must be a positive multiple of {g} (2**num_layers)")
    self.model = model
    self.config = config
    self.block_frames = block_frames
    self.fold_upsampling, self.host_delays = fold_upsampling, host_delays
    walk = _Walk(fold_upsampling=fold_upsampling, host_delays=host_delays)
    _, self.output_delay = _walk_network(model, walk, self._mix_stream(None))
    self.state_specs = dict(walk.specs)
    self.delay_specs = dict(walk.delay_specs)
    self._folded = None

  def _mix_stream(self, tensor) -> Stream:
    reference_input, _ = sizes_for_bottleneck(self.config, 2)
    return Stream(tensor, 0, self.block_frames, self.config.num_channels, reference_input)

  def _folded_kernels(self):
    """The up blocks' folded kernels, computed once from the weights (eagerly, so the step reads them as
    they are instead of refolding every block; later weight changes need a new `StreamGraph`)."""
    if self._folded is None:
      import contextlib

      from keras import ops

      from wave_unet_tf import backends
      eager = contextlib.nullcontext()
      if backends.is_tensorflow():
        import tensorflow as tf
        eager = tf.init_scope()  # eager even while the step is being traced
      with eager:  # (other backends fold before compiling the step: `PortableStreamStep`)
        folded = {}
        for level in self.model.structure.levels:
          layer = self.model.get_layer(level.up_conv.layer)
          keep = (ops.sigmoid(self.model.get_layer(level.upsample).interp) if level.learned_upsampling
                  else np.float32(0.5))
          folded[level.up_conv.layer] = tuple(
              ops.convert_to_numpy(t) for t in fold_up_kernels(layer, keep, level.down_conv.filters))
      self._folded = folded
    return self._folded

  def initial_states(self) -> List[np.ndarray]:
    """Zeros for every state (the frames they stand for are discarded as part of ``output_delay``)."""
    return [np.zeros((1, frames, features), np.float32) for frames, features in self.state_specs.values()]

  def step(self, mix, states: List[object], windows: List[object] = ()):
    """One block: ``mix [1, block_frames, channels]``, the states and the host's delay-line windows ->
    ``(sources, next states, new delay-line frames)``, sources a list ``[1, block_frames, channels]`` in
    ``config.source_names`` order."""
    walk = _Walk(dict(zip(self.state_specs, states)), self._folded_kernels(), self.fold_upsampling,
                 self.host_delays, dict(zip(self.delay_specs, windows)))
    sources, _ = _walk_network(self.model, walk, self._mix_stream(mix))
    return (sources, [walk.next_states[name] for name in self.state_specs],
            [walk.new_frames[name] for name in self.delay_specs])

  def state_names(self) -> List[str]:
    """Tensor names for the states (TFLite signature keys)."""
    return ["state_" + "".join(c if c.isalnum() else "_" for c in name) for name in self.state_specs]

  def input_signature(self):
    """``[mix, *states]`` as ``tf.TensorSpec``: ``[1, block_frames, channels]`` and ``[1, frames, features]``
    (the self-contained step: without ``host_delays``)."""
    import tensorflow as tf
    signature = [tf.TensorSpec([1, self.block_frames, self.config.num_channels], tf.float32, name="mix")]
    return signature + [tf.TensorSpec([1, frames, features], tf.float32, name=name)
                        for (frames, features), name in zip(self.state_specs.values(), self.state_names())]

  def flat_step(self, mix, *states):
    """`step` with the states as arguments and float32 results: ``(sources tuple, states tuple)`` (the
    self-contained step: without ``host_delays``)."""
    from keras import ops
    if self.delay_specs:
      raise ValueError("flat_step runs the self-contained step; this graph leaves delay lines to its caller")
    sources, next_states, _ = self.step(mix, list(states))
    return tuple(sources), tuple(ops.cast(s, "float32") for s in next_states)

  def function(self, jit_compile: bool = True):
    """The step as one ``tf.function`` over fixed shapes: ``f(mix, *states) -> (sources, states)``."""
    import tensorflow as tf
    return tf.function(self.flat_step, input_signature=self.input_signature(), jit_compile=jit_compile,
                       autograph=False)


def window_pieces(spec: DelaySpec) -> List[Tuple[int, int, int]]:
  """Where a host delay line's window lies in the new frames of earlier blocks: ``(back, first, count)``
  pieces in order, ``count`` frames from frame ``first`` of the new frames of the block ``back`` blocks
  before this one. Fixed for the whole stream: each block brings ``spec.frames`` new frames."""
  pieces, frame, end = [], -spec.lag, spec.width - spec.lag  # relative to this block's first new frame
  while frame < end:
    back = -(frame // spec.frames)  # block `back` holds frames -back * n .. -back * n + n - 1
    first = frame + back * spec.frames
    count = min(spec.frames - first, end - frame)
    pieces.append((back, first, count))
    frame += count
  return pieces
