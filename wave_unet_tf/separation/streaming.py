"""Real-time separation: push audio as it comes, get every source's next samples back, exactly the
whole-song result, with a fixed latency.

    stream = StreamingSeparator(model, sample_rate=44100, block_frames=4096)
    for chunk in chunks:                  # [n, channels] float32, any n
      out = stream.push(chunk)            # {source: [m, channels]}
    out = stream.flush()                  # the rest

The stages, each with one job: channels to the model's (as `Separator`) -> soxr's streaming resampler to the
model's rate -> blocks of ``block_frames`` on the grid through the streaming step
(`wave_unet_tf.separation.stream_graph`: each level's features cached between blocks) -> the whole-song
pass's samples, held to a fixed latency -> resampler back -> the input's channels.

At the model's rate the concatenated outputs equal one forward pass over the whole song to float rounding;
at other rates they equal `Separator.separate` to the streaming resampler's tolerance (measured < 1e-6:
soxr's streaming and one-shot resampling agree). Same-padding models (M1, M2) are refused. Silence: a stream
cannot know a song will stay silent, so it gives the model's response to silence (its biases' faint hum),
where `Separator` returns exact zeros for a song that is all zeros.
"""

from typing import Dict, List

import numpy as np

from wave_unet_tf import audio
from wave_unet_tf.separation.stream_graph import DEFAULT_BLOCK_FRAMES
from wave_unet_tf.sizes import model_context


class KerasStreamStep:
  """A `WaveUNet`'s streaming step, compiled once (with XLA by default) for ``[1, block_frames, channels]``.

  Two things keep a block's fixed cost down (benchmarks/streaming.py). The long delay lines (the fine
  levels' skips, waiting for the coarse levels) never travel whole: each block's new frames of all of them
  come out as one tensor, which stays as it is until the lines' later windows have been read from it
  (`window_pieces`), so the step takes the few earlier blocks' tensors it reads from and copies only the
  windows. And the states travel as one flat tensor, since every tensor a compiled function takes or
  returns costs tens of microseconds per call.

  Attributes:
    config, block_frames, output_delay: as `wave_unet_tf.separation.stream_graph.StreamGraph`.
  """

  def __init__(self, model, block_frames: int, jit_compile: bool = True):
    import tensorflow as tf

    from wave_unet_tf.separation.stream_graph import StreamGraph, window_pieces
    self.graph = StreamGraph(model, block_frames, host_delays=True)
    self.config, self.block_frames, self.output_delay = model.wave_unet_config, block_frames, self.graph.output_delay
    self._states = list(self.graph.state_specs.values())
    lines = list(self.graph.delay_specs.values())
    self._new_frames = [(d.frames, d.features) for d in lines]
    self._pieces = [window_pieces(d) for d in lines]
    # The earlier blocks the windows read from (1: the one before this), and how many are kept.
    self._backs = sorted({back for pieces in self._pieces for back, _, _ in pieces})
    self._kept = max(self._backs, default=0)
    mix = tf.TensorSpec([1, block_frames, self.config.num_channels], tf.float32)
    flat = [tf.TensorSpec([_size(self._states)], tf.float32)]
    flat += [tf.TensorSpec([_size(self._new_frames)], tf.float32)] * len(self._backs)
    # The concrete function: calling it skips tf.function's signature matching (~ms per block).
    self._function = tf.function(self._packed_step, input_signature=[mix, *flat], jit_compile=jit_compile,
                                 autograph=False).get_concrete_function()

  def _packed_step(self, mix, states, *earlier):
    """`StreamGraph.step` on flat tensors: ``(sources [S, block, channels], states, new delay-line frames)``;
    ``earlier``: the new delay-line frames of the blocks ``self._backs`` blocks back."""
    import tensorflow as tf

    parts = tf.split(states, [f * c for f, c in self._states]) if self._states else []
    states = [tf.reshape(part, [1, f, c]) for part, (f, c) in zip(parts, self._states)]
    block_of = dict(zip(self._backs, earlier))
    windows, line_start = [], 0
    for (frames, features), pieces in zip(self._new_frames, self._pieces):
      window = [tf.reshape(block_of[back][line_start + first * features:line_start + (first + count) * features],
                           [1, count, features]) for back, first, count in pieces]
      windows.append(window[0] if len(window) == 1 else tf.concat(window, axis=1))
      line_start += frames * features

    def pack(tensors):
      return tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1]) for t in tensors] or [tf.zeros([0])], 0)

    sources, states, new_frames = self.graph.step(mix, states, windows)
    return tf.stack([tf.cast(s, tf.float32)[0] for s in sources]), pack(states), pack(new_frames)

  def initial_states(self):
    """``(flat states, the delay lines' new frames of the last blocks, newest first)``, all zeros."""
    import tensorflow as tf
    return tf.zeros([_size(self._states)]), (tf.zeros([_size(self._new_frames)]),) * self._kept

  def run(self, mix: np.ndarray, states):
    """``mix [1, block_frames, channels]`` -> ``(list of [block_frames, channels] per source, states)``."""
    import tensorflow as tf
    flat_states, recent = states
    sources, flat_states, new_frames = self._function(tf.constant(mix), flat_states,
                                                      *[recent[back - 1] for back in self._backs])
    return list(sources.numpy()), (flat_states, ((new_frames,) + recent)[:self._kept])


class PortableStreamStep:
  """A `WaveUNet`'s streaming step on JAX or PyTorch (`wave_unet_tf.backends.inference.compile_step`: one
  ``jax.jit`` program, or torch eager): the self-contained step of `StreamGraph`, every state in and out as a
  tensor that stays on the device, the up blocks' folded kernels computed once before compiling.

  Attributes:
    config, block_frames, output_delay: as `wave_unet_tf.separation.stream_graph.StreamGraph`.
  """

  def __init__(self, model, block_frames: int, jit_compile: bool = True):
    from wave_unet_tf.backends import inference
    from wave_unet_tf.separation.stream_graph import StreamGraph
    self.graph = StreamGraph(model, block_frames)
    self.config, self.block_frames, self.output_delay = model.wave_unet_config, block_frames, self.graph.output_delay
    self.graph._folded_kernels()  # eagerly, outside the compiled step
    self._run = inference.compile_step(model, lambda mix, states: self.graph.flat_step(mix, *states), jit_compile)

  def initial_states(self):
    return self.graph.initial_states()

  def run(self, mix: np.ndarray, states):
    """``mix [1, block_frames, channels]`` -> ``(list of [block_frames, channels] per source, states)``."""
    sources, states = self._run(mix, states)
    return [source[0] for source in sources], states


def _size(shapes):
  return sum(frames * features for frames, features in shapes)


def as_stream_step(model_or_path, block_frames: int, jit_compile: bool = True, precision: str = "float32"):
  """The streaming step of a model: a streaming ``.tflite`` file (its own block size), or anything
  `wave_unet_tf.load_model` reads (compiled for ``block_frames``); at ``precision`` float16 or int8 the
  model's streaming TFLite step with weights of that type (`wave_unet_tf.precision`)."""
  from wave_unet_tf import precision as precisions
  precision = precisions.check(precision)
  if precision != precisions.DEFAULT:
    return precisions.stream_step(model_or_path, precision,
                                  DEFAULT_BLOCK_FRAMES if block_frames is None else block_frames)
  model = model_or_path
  if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
    path = str(model)
    if path.endswith(".tflite"):
      from wave_unet_tf.deploy.tflite_stream import TFLiteStreamStep
      step = TFLiteStreamStep(path)
      if block_frames not in (None, step.block_frames):
        raise ValueError(f"{path}: a streaming model for blocks of {step.block_frames} samples, not {block_frames}")
      return step
    from wave_unet_tf.model_sources import load_model
    model = load_model(path)
  if hasattr(model, "run") and hasattr(model, "output_delay"):
    return model
  if not hasattr(model, "wave_unet_config"):
    name = model_or_path if isinstance(model_or_path, str) else type(model).__name__
    raise ValueError(f"{name}: streaming needs a Keras model (.keras, a training folder, a TF1 checkpoint) or a "
                     f"streaming .tflite (wave-unet-export --tflite_stream)")
  from wave_unet_tf import backends
  step = KerasStreamStep if backends.is_tensorflow() else PortableStreamStep
  return step(model, DEFAULT_BLOCK_FRAMES if block_frames is None else block_frames, jit_compile)


class ModelRateStream:
  """The exact stream at the model's rate and channel count: ``push`` returns the whole-song pass's next
  samples, each ``latency_frames`` input samples after it came in (so, once the context has filled, as
  many samples out as in)."""

  def __init__(self, step):
    self.step = step
    self.config = step.config
    self.sources = list(self.config.source_names)
    self.block_frames = step.block_frames
    self._before, _ = model_context(self.config)
    # output_delay counts from the start of the padded song, whose first `before` samples are zeros.
    self.latency_frames = step.output_delay - self._before + self.block_frames - 1
    # The padding zeros are the same for every song: their whole blocks run once, here.
    states = step.initial_states()
    silence = np.zeros((1, self.block_frames, self.config.num_channels), np.float32)
    for _ in range(self._before // self.block_frames):
      _, states = step.run(silence, states)
    self._primed_states = states
    self.reset()

  def reset(self):
    """Starts a new song."""
    primed = self._before // self.block_frames * self.block_frames
    self._states = self._primed_states
    self._pending = [np.zeros((self._before - primed, self.config.num_channels), np.float32)]
    self._pending_frames = self._before - primed
    self._discard = self.step.output_delay - primed  # stream frames before the song's first sample
    self._ready = {source: [] for source in self.sources}
    self._ready_frames = 0
    self._frames_in = self._frames_out = 0

  def push(self, mix: np.ndarray) -> Dict[str, np.ndarray]:
    """``mix [n, num_channels]`` float32 at the model's rate -> ``{source: [m, num_channels]}``."""
    self._frames_in += len(mix)
    self._feed(mix)
    return self._emit(max(0, self._frames_in - self.latency_frames))

  def flush(self) -> Dict[str, np.ndarray]:
    """The rest of the song (its right context filled with zeros); then `reset`."""
    silence = np.zeros((self.block_frames, self.config.num_channels), np.float32)
    while self._frames_out + self._ready_frames < self._frames_in:
      self._feed(silence)
    out = self._emit(self._frames_in)
    self.reset()
    return out

  def _feed(self, mix):
    if len(mix):
      self._pending.append(np.asarray(mix, np.float32))
      self._pending_frames += len(mix)
    if self._pending_frames < self.block_frames:
      return
    pending = np.concatenate(self._pending)
    blocks = len(pending) // self.block_frames
    for k in range(blocks):
      block = pending[None, k * self.block_frames:(k + 1) * self.block_frames]
      outputs, self._states = self.step.run(block, self._states)
      skip = min(self._discard, self.block_frames)
      self._discard -= skip
      if skip < self.block_frames:
        for source, output in zip(self.sources, outputs):
          self._ready[source].append(np.asarray(output[skip:], np.float32))
        self._ready_frames += self.block_frames - skip
    rest = pending[blocks * self.block_frames:]
    self._pending, self._pending_frames = [rest], len(rest)

  def _emit(self, until: int) -> Dict[str, np.ndarray]:
    count = max(0, min(until - self._frames_out, self._ready_frames))
    out = {}
    for source in self.sources:
      # Whole blocks off the front of the queue; only the last one taken is split.
      ready, taken, parts = self._ready[source], 0, []
      while taken < count:
        piece = ready.pop(0)
        if taken + len(piece) > count:
          piece, rest = piece[:count - taken], piece[count - taken:]
          ready.insert(0, rest)
        parts.append(piece)
        taken += len(piece)
      out[source] = np.concatenate(parts) if parts else np.zeros((0, self.config.num_channels), np.float32)
    self._ready_frames -= count
    self._frames_out += count
    return out


class StreamingSeparator:
  """Separates a stream as it comes, with a fixed latency; the outputs concatenated equal
  `Separator.separate` of the whole song (exactly at the model's rate).

  Args:
    model_or_path: a `WaveUNet`, a path `wave_unet_tf.load_model` reads, or a streaming ``.tflite`` file
      (``wave-unet-export --tflite_stream``), which brings its own block size.
    sample_rate: the stream's rate in Hz (default: the model's); soxr's streaming resampler converts it.
    block_frames: samples per step at the model's rate, a multiple of ``2**num_layers`` (default
      `DEFAULT_BLOCK_FRAMES`; a streaming ``.tflite`` file's own). Smaller blocks: less latency, more
      overhead per sample.
    channels: the stream's channels (1 or 2; default: the first chunk's).
    jit_compile: compile the step with XLA.
    precision: ``float32`` (the model as it is, in process: exact), ``float16`` or ``int8``: the model's
      streaming step converted once to TFLite with weights of that type (`wave_unet_tf.precision`); the
      latency does not change.

  Attributes:
    latency_frames: input samples that go in before the matching output sample comes out, the same for
      every sample: the model's right context, plus ``block_frames - 1``, plus a few samples of decimation
      phase (13 for the paper's 12-layer models: M5-HighSR with 4096-sample blocks, 69,635 = 65,527 +
      4,095 + 13, 1.58 s), plus what soxr's streams hold back when the rate differs (measured once).
  """

  def __init__(self, model_or_path, sample_rate: int = None, block_frames: int = None,
               channels: int = None, jit_compile: bool = True, precision: str = "float32"):
    from wave_unet_tf import runtime
    with runtime.native_logs_filtered():  # TensorFlow's, its converter's and LiteRT's start-up lines
      self.core = ModelRateStream(as_stream_step(model_or_path, block_frames, jit_compile, precision))
    self.config = self.core.config
    self.block_frames = self.core.block_frames
    self.sample_rate = int(sample_rate or self.config.sample_rate)
    if self.sample_rate <= 0:
      raise ValueError(f"sample_rate={sample_rate}: must be positive")
    if channels not in (None, 1, 2):
      raise ValueError(f"channels={channels}: only mono and stereo are supported")
    self._fixed_channels = channels
    self.reset()

  @property
  def source_names(self):
    return self.config.source_names

  @property
  def resampling(self) -> bool:
    return self.sample_rate != self.config.sample_rate

  @property
  def latency_frames(self) -> int:
    if not self.resampling:
      return self.core.latency_frames
    return self._resampled_latency

  def reset(self):
    """Forgets the stream: the next push starts a new song."""
    self.core.reset()
    self.channels = self._fixed_channels
    self._frames_in = self._frames_out = 0
    self._front = self._back = None
    self._held = {source: [] for source in self.source_names}
    if self.resampling and not hasattr(self, "_resampled_latency"):
      self._resampled_latency = _resampled_latency(self.sample_rate, self.config.sample_rate,
                                                   self.core.latency_frames)

  def push(self, chunk: np.ndarray) -> Dict[str, np.ndarray]:
    """``chunk [n, channels]`` (or ``[n]``) float32 at ``sample_rate`` -> ``{source: [m, channels]}``."""
    chunk = self._check(chunk)
    self._frames_in += len(chunk)
    mix = audio.convert_channels(chunk, self.config.num_channels)
    if self.resampling:
      mix = self._front.resample_chunk(mix)
    return self._back_out(self.core.push(mix), last=False)

  def flush(self) -> Dict[str, np.ndarray]:
    """The rest of the song; the outputs concatenated have as many samples as went in. Then `reset`."""
    channels = self.channels or self.config.num_channels
    parts = []
    if self._frames_in:
      if self.resampling:
        tail = self._front.resample_chunk(np.zeros((0, self.config.num_channels), np.float32), last=True)
        parts.append(self._back_out(self.core.push(tail), last=False))
      parts.append(self._back_out(self.core.flush(), last=True))
    missing = self._frames_in - self._frames_out  # resampling there and back can be off by a sample or two
    out = {}
    for source in self.source_names:
      joined = np.concatenate([p[source] for p in parts] + [np.zeros((missing, channels), np.float32)])
      out[source] = joined
    self.reset()
    return out

  def _check(self, chunk):
    chunk = np.asarray(chunk, np.float32)
    if chunk.ndim == 1:
      chunk = chunk[:, None]
    if chunk.ndim != 2 or chunk.shape[1] not in (1, 2):
      raise audio.AudioError(f"stream: chunk of shape {chunk.shape}; expected [samples, 1 or 2 channels]")
    if self.channels is None:
      self.channels = chunk.shape[1]
    elif chunk.shape[1] != self.channels:
      raise audio.AudioError(f"stream: a chunk with {chunk.shape[1]} channels in a {self.channels}-channel stream")
    if not np.all(np.isfinite(chunk)):
      raise audio.AudioError("stream: contains NaN or Inf samples")
    if self.resampling and self._front is None:
      import soxr
      channels = self.config.num_channels
      self._front = soxr.ResampleStream(self.sample_rate, self.config.sample_rate, channels, quality="HQ")
      self._back = {source: soxr.ResampleStream(self.config.sample_rate, self.sample_rate, channels, quality="HQ")
                    for source in self.source_names}
    return chunk

  def _back_out(self, estimates, last):
    """Resamples the core's output back and releases it on the fixed schedule: everything up to
    ``latency_frames`` samples behind the input (soxr's streams deliver in bursts), all of it at the end."""
    due = self._frames_in - self._frames_out - (0 if last or not self.resampling else self.latency_frames)
    out = {}
    for source in self.source_names:
      estimate = estimates[source]
      if self.resampling:
        self._held[source].append(self._back[source].resample_chunk(estimate, last=last))
        held = np.concatenate(self._held[source])
        estimate, rest = held[:max(0, due)], held[max(0, due):]
        self._held[source] = [rest] if len(rest) and not last else []
      # Never more than came in: the tail of the last resampled block is cut at the song's end.
      estimate = estimate[:max(0, self._frames_in - self._frames_out)]
      out[source] = np.ascontiguousarray(audio.convert_channels(estimate, self.channels), np.float32)
    self._frames_out += len(out[self.source_names[0]])
    return out


def _resampled_latency(rate: int, model_rate: int, core_latency: int) -> int:
  """The fixed latency at ``rate``, in its samples: the core's, plus what soxr's streaming resamplers hold
  back on the way in and out, which varies as they work in internal blocks. Measured once by running
  the two resamplers (the core as a fixed delay) over two seconds of input in small and large chunks, and
  taking the most they ever held back."""
  import soxr
  most = 0
  for chunk in (2, 64, 4096):
    front = soxr.ResampleStream(rate, model_rate, 1, quality="HQ")
    back = soxr.ResampleStream(model_rate, rate, 1, quality="HQ")
    pushed = model_in = model_out = emitted = 0
    while pushed < 2 * rate + core_latency * rate // model_rate:
      pushed += chunk
      model_in += len(front.resample_chunk(np.zeros((chunk, 1), np.float32)))
      ready = max(0, model_in - core_latency) - model_out
      model_out += ready
      emitted += len(back.resample_chunk(np.zeros((ready, 1), np.float32)))
      if emitted:
        most = max(most, pushed - emitted)
  return most + 2  # whole-sample rounding of other chunk sizes
