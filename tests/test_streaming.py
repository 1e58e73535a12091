"""Real-time separation: the stream's outputs, pushed in any chunks, equal one whole-song forward pass; its
latency is fixed and stated; the streaming TFLite model runs under LiteRT alone; the live command works."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.separation import windows
from wave_unet_tf.separation.streaming import StreamingSeparator
from wave_unet_tf.sizes import grid, model_context

from conftest import ORIGINAL_TF1, PROJECT_ROOT
from test_separation_polyphase import CONFIG_VARIANTS, randomised, tiny_config, variant_id

FIXTURE_MODELS = ("tiny_m5", "tiny_m6", "tiny_direct_multi", "deep_m5_thin")


@pytest.fixture(scope="module")
def fixture_models():
  models = {}
  for name in FIXTURE_MODELS:
    config = Config.from_dict(json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"])
    models[name] = wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / name), config)
  return models


def whole_song_pass(model, song):
  """One forward pass over the padded song, as `tests/test_separation.py`."""
  config = model.wave_unet_config
  plan = windows.plan_windows(config, len(song), output_frames=len(song) + grid(config))
  outputs = model(windows.padded_song(config, plan, song)[None], training=False)
  return {k: np.asarray(v)[0, plan.keep_offset:plan.keep_offset + len(song)] for k, v in outputs.items()}


def chunk_sizes(pattern, total, seed=0):
  if pattern == "one sample":
    return [1] * total
  if pattern == "whole song":
    return [total]
  rng = np.random.default_rng(seed)
  sizes = []
  while sum(sizes) < total:
    sizes.append(int(rng.choice([1, 7, 300, 1000, 5000])))
  return sizes


def stream_song(stream, song, sizes):
  """Pushes ``song`` in chunks of ``sizes``, checking the fixed latency as it goes; returns the outputs."""
  outputs, done, emitted = [], 0, 0
  for size in sizes:
    chunk = song[done:done + size]
    done += len(chunk)
    out = stream.push(chunk)
    outputs.append(out)
    emitted += len(next(iter(out.values())))
    if not stream.resampling:
      assert emitted == max(0, done - stream.latency_frames)  # as many out as in, latency_frames later
    elif emitted:  # soxr's streams add their delays (and round each chunk to whole samples)
      assert stream.latency_frames - 6 <= done - emitted <= stream.latency_frames
  outputs.append(stream.flush())
  return {s: np.concatenate([o[s] for o in outputs]) for s in stream.source_names}


def assert_exact(model, block_frames, pattern, song_frames=3000, jit_compile=False, seed=1):
  config = model.wave_unet_config
  song = np.random.default_rng(seed).uniform(-0.5, 0.5, (song_frames, config.num_channels)).astype(np.float32)
  expected = whole_song_pass(model, song)
  stream = StreamingSeparator(model, block_frames=block_frames, jit_compile=jit_compile)
  actual = stream_song(stream, song, chunk_sizes(pattern, len(song), seed))
  for source in config.source_names:
    assert actual[source].shape == song.shape
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-5, rtol=0, err_msg=source)


@pytest.mark.parametrize("pattern", ["one sample", "random", "whole song"])
@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_stream_of_the_original_checkpoints_equals_the_whole_song_pass(fixture_models, name, blocks, pattern):
  model = fixture_models[name]
  assert_exact(model, blocks * grid(model.wave_unet_config), pattern, song_frames=2500 if blocks == 1 else 9000)


def test_stream_compiled_with_xla_equals_the_whole_song_pass(fixture_models):
  assert_exact(fixture_models["tiny_m5"], 64, "random", jit_compile=True)


@pytest.mark.parametrize("changes", CONFIG_VARIANTS, ids=variant_id)
@pytest.mark.parametrize("blocks", [1, 5])
def test_stream_of_random_configs_equals_the_whole_song_pass(changes, blocks, monkeypatch):
  if blocks > 1:  # and with every long delay line kept outside the step
    from wave_unet_tf.separation import stream_graph
    monkeypatch.setattr(stream_graph, "HOST_DELAY_FLOATS", 0)
  model = randomised(wut.build_model(tiny_config(**changes)))
  assert_exact(model, blocks * grid(model.wave_unet_config), "random", song_frames=1500)


@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_delay_lines_kept_outside_the_step_give_the_same_stream(fixture_models, name, blocks, monkeypatch):
  from wave_unet_tf.separation import stream_graph
  monkeypatch.setattr(stream_graph, "HOST_DELAY_FLOATS", 0)  # every line that can leave the step does
  model = fixture_models[name]
  block_frames = blocks * grid(model.wave_unet_config)
  graph = stream_graph.StreamGraph(model, block_frames, host_delays=True)
  assert graph.delay_specs and all(d.lag >= d.width for d in graph.delay_specs.values())
  assert_exact(model, block_frames, "random", song_frames=2500 if blocks == 1 else 9000)


def test_the_paper_models_long_delay_lines_are_kept_outside_the_step():
  from wave_unet_tf.separation.stream_graph import StreamGraph
  model = wut.build_model(wut.get_preset("M5-HighSR"))
  inside, outside = StreamGraph(model, 4096), StreamGraph(model, 4096, host_delays=True)
  floats = lambda specs: sum(frames * features for frames, features in specs)  # noqa: E731
  assert floats(inside.state_specs.values()) > 6_000_000  # the skips wait for the whole network
  assert floats(outside.state_specs.values()) < 200_000
  assert inside.output_delay == outside.output_delay


@pytest.mark.parametrize("lag, width, frames", [(4, 4, 4), (5, 4, 4), (7, 3, 2), (37, 9, 8), (64, 16, 16)])
def test_a_delay_line_window_is_read_from_the_blocks_that_hold_it(lag, width, frames):
  from wave_unet_tf.separation.stream_graph import DelaySpec, window_pieces
  pieces = window_pieces(DelaySpec(lag, width, frames, features=1))
  assert all(back >= 1 for back, _, _ in pieces)  # only earlier blocks, never this one
  for block in range(-(-lag // frames), 12):  # block k's new frames are the line's frames k*n .. k*n + n - 1
    new_frames = lambda k: np.arange(k * frames, (k + 1) * frames)  # noqa: E731
    window = np.concatenate([new_frames(block - back)[first:first + count] for back, first, count in pieces])
    np.testing.assert_array_equal(window, np.arange(block * frames - lag, block * frames - lag + width))


@pytest.mark.parametrize("changes", [{}, {"upsampling": "linear", "merge_filter_size": 4}])
def test_folded_and_plain_up_blocks_compute_the_same_stream(changes):
  from wave_unet_tf.separation.stream_graph import StreamGraph
  model = randomised(wut.build_model(tiny_config(**changes)))
  song = np.random.default_rng(2).uniform(-0.5, 0.5, (1, 640, 2)).astype(np.float32)
  results = []
  for fold in (True, False):
    graph = StreamGraph(model, 32, fold_upsampling=fold)
    step, states, outputs = graph.function(jit_compile=False), graph.initial_states(), []
    for start in range(0, song.shape[1], 32):
      sources, states = step(song[:, start:start + 32], *states)
      outputs.append(sources[-1].numpy())
    results.append((graph.output_delay, np.concatenate(outputs, axis=1)))
  assert results[0][0] == results[1][0]
  np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-5)


@pytest.mark.parametrize("block_frames", [16, 48])
@pytest.mark.parametrize("at", [601, 610])
def test_an_impulse_comes_out_latency_frames_after_it_went_in(block_frames, at):
  model = randomised(wut.build_model(tiny_config()))
  _, after = model_context(model.wave_unet_config)
  frames = 1200
  silence = np.zeros((frames, 2), np.float32)
  impulse = silence.copy()
  impulse[at] = 0.9
  quiet = stream_song(StreamingSeparator(model, block_frames=block_frames, jit_compile=False), silence, [frames])
  stream = StreamingSeparator(model, block_frames=block_frames, jit_compile=False)
  # The right context, the rest of the block, and a few samples of decimation phase.
  assert after + block_frames - 1 <= stream.latency_frames <= after + block_frames + 8
  pushed, emitted_at, outputs = 0, [], []
  for sample in impulse:
    pushed += 1
    out = stream.push(sample[None])["vocals"]
    emitted_at += [pushed] * len(out)  # the input count at which each output sample came out
    outputs.append(out)
  outputs = np.concatenate(outputs + [stream.flush()["vocals"]])
  np.testing.assert_array_equal(emitted_at, np.arange(len(emitted_at)) + 1 + stream.latency_frames)
  first = np.flatnonzero(np.any(np.abs(outputs - quiet["vocals"]) > 1e-7, axis=1))[0]
  assert first <= at - after  # the impulse reaches back at least the model's right context ...
  assert emitted_at[first] >= at + 1  # ... yet shows up only after it went in


@pytest.mark.parametrize("rate,channels", [(11025, 2), (11025, 1), (6000, 1)])
def test_stream_at_another_rate_matches_the_separator(rate, channels):
  model = randomised(wut.build_model(tiny_config()))  # 8 kHz stereo
  song = np.random.default_rng(4).uniform(-0.5, 0.5, (4001, channels)).astype(np.float32)
  expected = wut.Separator(model, jit_compile=False).separate(song, rate)
  stream = StreamingSeparator(model, sample_rate=rate, block_frames=32, jit_compile=False)
  actual = stream_song(stream, song, chunk_sizes("random", len(song)))
  for source in model.wave_unet_config.source_names:
    assert actual[source].shape == song.shape
    # soxr's streaming and one-shot resampling agree to float rounding (measured: < 1e-6).
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-5, rtol=0)


def test_mono_stream_through_a_stereo_model_equals_the_separator():
  model = randomised(wut.build_model(tiny_config()))
  song = np.random.default_rng(5).uniform(-0.5, 0.5, (2000,)).astype(np.float32)
  expected = wut.Separator(model, jit_compile=False).separate(song, 8000)
  stream = StreamingSeparator(model, block_frames=16, jit_compile=False)
  actual = stream_song(stream, song, chunk_sizes("random", len(song)))
  for source in expected:
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-5, rtol=0)


def test_reset_starts_a_new_song_and_silence_gives_the_models_response_to_silence():
  model = randomised(wut.build_model(tiny_config()))
  song = np.random.default_rng(6).uniform(-0.5, 0.5, (700, 2)).astype(np.float32)
  stream = StreamingSeparator(model, block_frames=16, jit_compile=False)
  stream.push(song[:300])
  stream.reset()
  again = stream_song(stream, song, [700])
  np.testing.assert_allclose(again["vocals"], whole_song_pass(model, song)["vocals"], atol=1e-5)
  silent = stream_song(stream, np.zeros((300, 2), np.float32), [300])
  # Not the exact zeros Separator returns for an all-zero song: a stream cannot know it will stay silent.
  np.testing.assert_allclose(silent["vocals"], whole_song_pass(model, np.zeros((300, 2), np.float32))["vocals"],
                             atol=1e-5)


def test_same_padding_models_and_off_grid_blocks_are_refused():
  with pytest.raises(ValueError, match="same-padding"):
    StreamingSeparator(wut.build_model(wut.get_preset("M1").replace(num_layers=3, num_initial_filters=4)))
  model = wut.build_model(tiny_config())
  for block_frames in (8, 24):
    with pytest.raises(ValueError, match="multiple of 16"):
      StreamingSeparator(model, block_frames=block_frames)
  stream = StreamingSeparator(model, block_frames=16, jit_compile=False)
  with pytest.raises(wut.audio.AudioError, match="NaN"):
    stream.push(np.full((4, 2), np.nan, np.float32))
  with pytest.raises(wut.audio.AudioError, match="channels"):
    stream.push(np.zeros((4, 3), np.float32))


@pytest.fixture(scope="module")
def exported_stream(tmp_path_factory):
  """A random tiny model exported by the command: ``(model, .keras path, streaming .tflite path)``."""
  folder = tmp_path_factory.mktemp("stream_export")
  model = randomised(wut.build_model(tiny_config(sample_rate=16000)))
  model.save(str(folder / "model.keras"))
  env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
  subprocess.run([sys.executable, "-m", "wave_unet_tf.export", f"--model={folder / 'model.keras'}",
                  f"--tflite_stream={folder / 'stream.tflite'}", "--block_frames=32"],
                 cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
  return model, folder / "model.keras", folder / "stream.tflite"


def test_streaming_tflite_runs_under_litert_alone_and_equals_the_stream(exported_stream, tmp_path):
  model, _, path = exported_stream
  song = np.random.default_rng(7).uniform(-0.5, 0.5, (3000, 2)).astype(np.float32)
  np.save(tmp_path / "song.npy", song)
  # Block by block with the state fed back, importing only LiteRT and numpy.
  script = textwrap.dedent(f"""
      import sys, numpy as np
      from ai_edge_litert.interpreter import Interpreter
      runner = Interpreter(model_path={str(path)!r}).get_signature_runner("serving_default")
      inputs = runner.get_input_details()
      states = {{name: np.zeros(d["shape"], np.float32) for name, d in inputs.items() if name != "mix"}}
      block = inputs["mix"]["shape"][1]
      song = np.load({str(tmp_path / 'song.npy')!r})
      vocals = []
      for start in range(0, len(song) - block + 1, block):
        out = runner(mix=song[None, start:start + block], **states)
        states = {{name: out["next_" + name] for name in states}}
        vocals.append(out["vocals"][0])
      np.save({str(tmp_path / 'vocals.npy')!r}, np.concatenate(vocals))
      assert "tensorflow" not in sys.modules and "wave_unet_tf" not in sys.modules
  """)
  subprocess.run([sys.executable, "-I", "-c", script], check=True, capture_output=True, cwd=tmp_path)
  from wave_unet_tf.separation.stream_graph import StreamGraph
  graph = StreamGraph(model, 32)
  step, states, expected = graph.function(jit_compile=False), graph.initial_states(), []
  for start in range(0, len(song) - 31, 32):
    sources, states = step(song[None, start:start + 32], *states)
    expected.append(sources[-1].numpy()[0])
  np.testing.assert_allclose(np.load(tmp_path / "vocals.npy"), np.concatenate(expected), atol=1e-4, rtol=0)
  from tensorflow.lite.python import schema_py_generated as schema
  flat = schema.Model.GetRootAsModel(path.read_bytes(), 0)
  codes = [flat.OperatorCodes(i) for i in range(flat.OperatorCodesLength())]
  assert all(c.CustomCode() is None for c in codes)  # builtin ops only


def test_streaming_separator_takes_the_tflite_file(exported_stream):
  model, _, path = exported_stream
  song = np.random.default_rng(8).uniform(-0.5, 0.5, (2000, 2)).astype(np.float32)
  stream = StreamingSeparator(str(path))
  assert stream.block_frames == 32
  actual = stream_song(stream, song, chunk_sizes("random", len(song)))
  expected = whole_song_pass(model, song)
  for source in expected:
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-4, rtol=0)
  with pytest.raises(ValueError, match="blocks of 32"):
    StreamingSeparator(str(path), block_frames=64)


def test_live_command_streams_stdin_to_stdout(exported_stream, tmp_path):
  import soundfile
  model, keras_path, _ = exported_stream
  song = np.random.default_rng(9).uniform(-0.5, 0.5, (6000, 2)).astype(np.float32)
  soundfile.write(str(tmp_path / "song.flac"), song, 22050)  # another rate and a compressed format
  env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
  with open(tmp_path / "song.flac", "rb") as stdin:
    result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--model={keras_path}",
                             "--block_frames=32", "--stdout=vocals", "--nojit_compile", "-"],
                            stdin=stdin, capture_output=True, cwd=PROJECT_ROOT, env=env)
  assert result.returncode == 0, result.stderr.decode()[-2000:]
  (tmp_path / "vocals.wav").write_bytes(result.stdout)
  written, rate = soundfile.read(str(tmp_path / "vocals.wav"), dtype="float32")
  decoded, _ = soundfile.read(str(tmp_path / "song.flac"), dtype="float32")
  assert rate == 22050 and written.shape == song.shape
  np.testing.assert_allclose(written, wut.Separator(model).separate(decoded, 22050)["vocals"], atol=1e-5)


def test_live_command_needs_stdin_and_stdout(exported_stream):
  _, keras_path, _ = exported_stream
  env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", f"--model={keras_path}",
                           "--block_frames=32", "song.wav"], capture_output=True, cwd=PROJECT_ROOT, env=env)
  assert result.returncode == 1 and b"--block_frames=32" in result.stderr and b"Traceback" not in result.stderr


def test_export_refuses_an_off_grid_block_in_one_line(exported_stream, tmp_path):
  _, keras_path, _ = exported_stream
  env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.export", f"--model={keras_path}",
                           f"--tflite_stream={tmp_path / 's.tflite'}", "--block_frames=24"],
                          capture_output=True, cwd=PROJECT_ROOT, env=env)
  assert result.returncode == 1 and b"block_frames=24" in result.stderr and b"Traceback" not in result.stderr
  assert not (tmp_path / "s.tflite").exists()


def test_a_real_song_streams_exactly_through_the_original_checkpoint(fixture_models):
  from wave_unet_tf import audio
  from conftest import MUSDB_SAMPLE
  model = fixture_models["deep_m5_thin"]  # 12 layers, as the paper's models
  rate = model.wave_unet_config.sample_rate
  mixture, mixture_rate = audio.load(str(sorted(MUSDB_SAMPLE.glob("train/*.stem.mp4"))[0]), channels=2)
  song = audio.resample(mixture[:3 * mixture_rate], mixture_rate, rate)
  expected = whole_song_pass(model, song)
  stream = StreamingSeparator(model, block_frames=4096, jit_compile=False)
  actual = stream_song(stream, song, chunk_sizes("random", len(song), seed=3))
  for source in expected:
    np.testing.assert_allclose(actual[source], expected[source], atol=1e-5, rtol=0)
