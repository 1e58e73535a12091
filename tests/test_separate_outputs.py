"""What separation writes: stems, two stems, codecs and bit depths read back by ffprobe, clipping, file name
templates, parts of a file, folders with --skip_existing, devices, and smaller windows after running out of
memory; in Python and through the real command."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import wave_unet_tf as wut
from wave_unet_tf.separation import outputs
from wave_unet_tf.separation.forward import as_forward_pass

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
RATE = 16000
SOURCES = ("bass", "drums", "other", "vocals")


@pytest.fixture(scope="module")
def model():
  config = wut.get_preset("M6").replace(num_layers=4, num_initial_filters=4, sample_rate=RATE)
  return wut.build_model(config)


@pytest.fixture(scope="module")
def separator(model):
  return wut.Separator(model, window_seconds=0.5, jit_compile=False)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
  from wave_unet_tf.model.saving import save_model
  return save_model(model, str(tmp_path_factory.mktemp("model") / "four.keras"))


@pytest.fixture(scope="module")
def real_mp3(tmp_path_factory):
  """A real MP3 (LAME through ffmpeg) of 2 s of a stereo chord with noise at 44.1 kHz."""
  folder = tmp_path_factory.mktemp("mp3")
  t = np.arange(88200) / 44100
  chord = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) / 4
  noise = np.random.default_rng(0).normal(0, 0.05, (88200, 2))
  soundfile.write(folder / "chord.wav", (chord[:, None] + noise).astype(np.float32), 44100)
  subprocess.run(["ffmpeg", "-v", "error", "-i", folder / "chord.wav", "-c:a", "libmp3lame", "-b:a", "192k",
                  folder / "chord.mp3"], check=True)
  return folder / "chord.mp3"


def ffprobe(path):
  result = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
                          capture_output=True, text=True, check=True)
  info = json.loads(result.stdout)
  return info["streams"][0], float(info["format"]["duration"])


def decoded_frames(path):
  """Samples ffmpeg decodes (it honours the encoders' delay and padding records)."""
  raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "f32le", "-"], capture_output=True,
                       check=True).stdout
  return len(raw) // 4


def read(path):
  return soundfile.read(path, dtype="float32", always_2d=True)[0]


def write_song(path, seconds=1.0, rate=RATE, channels=2, amplitude=0.5, seed=0):
  waveform = np.random.default_rng(seed).uniform(-amplitude, amplitude, (int(seconds * rate), channels))
  soundfile.write(path, waveform.astype(np.float32), rate, subtype="FLOAT" if str(path).endswith(".wav") else None)
  return str(path)


# Every codec and bit depth, with what ffprobe reports and how much longer than the input the codec may make
# the file (its padding): MP3 adds the encoder delay and fills the last frame of 1152 samples; AAC fills its last
# frame of 1024 samples (ffprobe reads the exact length from the M4A edit list, a decoder may not).
FORMATS = [("wav", 16, "pcm_s16le", 0), ("wav", 24, "pcm_s24le", 0), ("wav", 32, "pcm_f32le", 0),
           ("wav", None, "pcm_f32le", 0), ("flac", 16, "flac", 0), ("flac", 24, "flac", 0),
           ("flac", None, "flac", 0), ("ogg", None, "vorbis", 0), ("mp3", None, "mp3", 2 * 1152 + 529),
           ("m4a", None, "aac", 1024)]


@pytest.mark.parametrize("codec,bit_depth,codec_name,padding", FORMATS)
def test_a_real_mp3_through_every_codec_and_bit_depth_reads_back_at_its_rate_length_and_channels(
    separator, real_mp3, tmp_path, codec, bit_depth, codec_name, padding):
  paths, seconds = separator.separate_file(str(real_mp3), str(tmp_path), codec=codec, bit_depth=bit_depth)
  frames = decoded_frames(real_mp3) // 2
  assert set(paths) == set(SOURCES)
  for path in paths.values():
    assert path.endswith(f"chord/{os.path.basename(path).split('.')[0]}.{codec}")
    stream, duration = ffprobe(path)
    assert stream["codec_name"] == codec_name
    assert int(stream["sample_rate"]) == 44100 and stream["channels"] == 2
    if codec == "flac":
      assert int(stream["bits_per_raw_sample"]) == (bit_depth or 16)
    assert frames <= round(duration * 44100) <= frames + padding
    assert abs(decoded_frames(path) // 2 - frames) <= padding
  assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.parametrize("codec,bitrate", [("mp3", "96k"), ("ogg", "96k"), ("m4a", "96k"), ("mp3", "320000")])
def test_bitrate_sets_the_lossy_codecs_rate(separator, real_mp3, tmp_path, codec, bitrate):
  paths, _ = separator.separate_file(str(real_mp3), str(tmp_path), codec=codec, bitrate=bitrate, stems=["vocals"])
  stream, _ = ffprobe(paths["vocals"])
  target = int(bitrate.rstrip("k")) * (1000 if bitrate.endswith("k") else 1)
  assert 0.6 * target < int(stream.get("bit_rate") or ffprobe_format_bitrate(paths["vocals"])) < 1.4 * target


def ffprobe_format_bitrate(path):
  result = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", path], capture_output=True,
                          text=True, check=True)
  return json.loads(result.stdout)["format"]["bit_rate"]


def test_stems_writes_only_those_and_two_stems_add_up_to_the_mixture_estimate(separator, tmp_path):
  song = write_song(tmp_path / "song.wav")
  all_paths, _ = separator.separate_file(song, str(tmp_path / "all"))
  everything = {s: read(p) for s, p in all_paths.items()}
  some, _ = separator.separate_file(song, str(tmp_path / "some"), stems=["drums", "vocals"])
  assert sorted(os.listdir(tmp_path / "some" / "song")) == ["drums.wav", "vocals.wav"]
  np.testing.assert_array_equal(read(some["drums"]), everything["drums"])
  two, _ = separator.separate_file(song, str(tmp_path / "two"), two_stems="vocals")
  assert list(two) == ["vocals", "no_vocals"]
  np.testing.assert_array_equal(read(two["vocals"]), everything["vocals"])
  np.testing.assert_allclose(read(two["no_vocals"]), everything["bass"] + everything["drums"] + everything["other"],
                             atol=1e-5)
  np.testing.assert_allclose(read(two["vocals"]) + read(two["no_vocals"]), sum(everything.values()), atol=1e-5)


@pytest.mark.parametrize("options,clipped", [({}, False), ({"clip": "clamp"}, True), ({"codec": "flac"}, True),
                                             ({"codec": "wav", "bit_depth": 16}, True),
                                             ({"codec": "ogg", "clip": "none"}, False)])
def test_samples_beyond_full_scale_are_clamped_or_kept(separator, tmp_path, options, clipped):
  song = write_song(tmp_path / "loud.wav", amplitude=3.0)
  # Each source is within full scale (tanh and the model's clipping); three of them added up are not.
  paths, _ = separator.separate_file(song, str(tmp_path / "out"), stems=["no_vocals"], **options)
  peak = np.abs(read(paths["no_vocals"])).max()
  assert (peak <= 1.0) if clipped else (peak > 1.5)


def test_a_template_names_the_files_and_a_part_of_a_file_is_that_part_separated(separator, tmp_path):
  song = write_song(tmp_path / "song.wav", seconds=3.0)
  part = tmp_path / "part.wav"
  soundfile.write(part, read(song)[RATE // 2:RATE // 2 + 2 * RATE], RATE, subtype="FLOAT")
  cut, _ = separator.separate_file(str(part), str(tmp_path / "cut"))
  paths, seconds = separator.separate_file(song, str(tmp_path / "out"), offset=0.5, duration=2.0,
                                           filename="{stem}/{track}-{stem}.{ext}", track="take1")
  assert seconds == 2.0
  assert paths["vocals"] == str(tmp_path / "out" / "vocals" / "take1-vocals.wav")
  for source in SOURCES:
    np.testing.assert_allclose(read(paths[source]), read(cut[source]), atol=1e-5)


def test_a_part_of_a_file_ffmpeg_decodes_is_that_part_too(separator, real_mp3, tmp_path):
  m4a = tmp_path / "chord.m4a"  # libsndfile reads MP3 itself; M4A goes through ffmpeg
  subprocess.run(["ffmpeg", "-v", "error", "-i", real_mp3, "-c:a", "aac", m4a], check=True)
  whole, _ = separator.separate_file(str(m4a), str(tmp_path / "whole"), stems=["vocals"], codec="flac")
  part, seconds = separator.separate_file(str(m4a), str(tmp_path / "part"), stems=["vocals"], codec="flac",
                                          offset=1.5, duration=10)
  assert read(part["vocals"]).shape[0] == read(whole["vocals"]).shape[0] - 1.5 * 44100
  with pytest.raises(wut.audio.AudioError, match=r"chord\.m4a: --offset=5\.0 s is past its end \(2\.0 s\)"):
    separator.separate_file(str(m4a), str(tmp_path / "late"), offset=5.0)
  assert not (tmp_path / "late").exists()


@pytest.mark.parametrize("options,message", [
    ({"codec": "aiff"}, "--codec=aiff: choose one of wav, flac, ogg, mp3, m4a"),
    ({"codec": "flac", "bit_depth": 32}, "--bit_depth=32: flac holds 16, 24 bits"),
    ({"bit_depth": 8}, "--bit_depth=8: wav holds 16, 24, 32 bits"),
    ({"bitrate": "fast"}, "--bitrate=fast: give bits per second"),
    ({"clip": "fold"}, "--clip=fold: choose one of clamp, none"),
    ({"codec": "flac", "clip": "none"}, "--clip=none: 16-bit flac cannot hold samples beyond full scale"),
    ({"filename": "{track}/{instrument}.{ext}"}, "--filename={track}/{instrument}.{ext}: unknown field {instrument}"),
    ({"filename": "../{stem}.{ext}"}, "give a relative path inside --output_dir"),
    ({"stems": ["vocals"], "two_stems": "drums"}, "--two_stems=drums: give it or --stems, not both")])
def test_bad_options_name_the_flag(options, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    outputs.OutputOptions(**options)


@pytest.mark.parametrize("options,message", [
    ({"stems": ["guitar"]}, "--stems=guitar: not a source of this model (bass, drums, other, vocals; or no_<source>"),
    ({"two_stems": "piano"}, "--two_stems=piano: not a source of this model (bass, drums, other, vocals)"),
    ({"filename": "{track}.{ext}"}, "needs {stem} to tell the 4 stems apart")])
def test_stems_the_model_lacks_list_its_sources(separator, tmp_path, options, message):
  song = write_song(tmp_path / "song.wav", seconds=0.2)
  with pytest.raises(ValueError, match=re.escape(message)):
    separator.separate_file(song, str(tmp_path / "out"), **options)
  assert not (tmp_path / "out").exists()


def test_a_rate_mp3_cannot_hold_is_one_line_naming_the_file(separator, tmp_path):
  song = write_song(tmp_path / "hi.wav", seconds=0.2, rate=96000)
  with pytest.raises(ValueError, match=r"hi\.wav: --codec=mp3 cannot hold its rate of 96000 Hz"):
    separator.separate_file(song, str(tmp_path / "out"), codec="mp3")
  assert not list((tmp_path).rglob("*.mp3"))


class OutOfMemoryAboveFrames:
  """A forward pass that runs out of memory for windows longer than ``frames``, like a GPU would."""

  def __init__(self, forward_pass, frames):
    self.inner, self.frames, self.failures = forward_pass, frames, 0
    self.config, self.input_frames, self.batch_size = forward_pass.config, None, forward_pass.batch_size

  def forward(self, mix):
    import tensorflow as tf
    if mix.shape[1] > self.frames:
      self.failures += 1
      raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    return self.inner.forward(mix)


def test_out_of_memory_halves_the_windows_says_so_once_and_changes_nothing(model, tmp_path, capsys):
  wut.runtime._said.clear()
  song = write_song(tmp_path / "song.wav", seconds=4.0)
  reference, _ = wut.Separator(model, window_seconds=2.0, jit_compile=False).separate_file(song, str(tmp_path / "a"))
  fits = wut.io_sizes(model.wave_unet_config, int(0.6 * RATE))[0]  # windows of 0.5 s output fit, of 1 s do not
  forward = OutOfMemoryAboveFrames(as_forward_pass(model, jit_compile=False), frames=fits)
  separator = wut.Separator(forward, window_seconds=2.0)
  paths, _ = separator.separate_file(song, str(tmp_path / "b"))
  assert forward.failures == 2 and separator.window_seconds == 0.5  # 2 s -> 1 s -> 0.5 s
  for source in SOURCES:
    np.testing.assert_allclose(read(paths[source]), read(reference[source]), atol=1e-5)
  in_memory = separator.separate(read(song), RATE)
  np.testing.assert_allclose(in_memory["vocals"], read(reference["vocals"]), atol=1e-5)
  notices = [line for line in capsys.readouterr().err.splitlines() if "out of memory" in line]
  assert len(notices) == 1 and "the windows are halved until they fit" in notices[0]


def test_out_of_memory_at_the_smallest_window_is_raised(model, tmp_path):
  import tensorflow as tf
  song = write_song(tmp_path / "song.wav", seconds=0.5)
  forward = OutOfMemoryAboveFrames(as_forward_pass(model, jit_compile=False), frames=1)
  with pytest.raises(tf.errors.ResourceExhaustedError):
    wut.Separator(forward, window_seconds=0.5).separate_file(song, str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


def run_separate(*args):
  return subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", "--noprogress", *map(str, args)],
                        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_folders_are_searched_recursively_and_skip_existing_skips_what_is_done(model_file, tmp_path):
  music = tmp_path / "music"
  (music / "live").mkdir(parents=True)
  write_song(music / "a.wav", seconds=0.3)
  write_song(music / "live" / "b.flac", seconds=0.3)
  (music / "notes.txt").write_text("not audio")
  out = music / "separated"  # inside the folder: its files are not inputs on the second run
  first = run_separate("--model", model_file, "--output_dir", out, "--two_stems=vocals", "--codec=flac",
                       "--skip_existing", music)
  assert first.returncode == 0, first.stderr
  assert sorted(str(p.relative_to(out)) for p in out.rglob("*.flac")) == [
      "a/no_vocals.flac", "a/vocals.flac", "live/b/no_vocals.flac", "live/b/vocals.flac"]
  assert first.stdout.splitlines()[-1] == "2 separated, 0 skipped, 0 failed"
  (out / "live" / "b" / "vocals.flac").unlink()
  second = run_separate("--model", model_file, "--output_dir", out, "--two_stems=vocals", "--codec=flac",
                        "--skip_existing", music, tmp_path / "missing.wav")
  assert second.returncode == 1
  assert second.stdout.splitlines()[-1] == "1 separated, 1 skipped, 1 failed"
  assert f"{music / 'a.wav'}: skipped, its outputs exist" in second.stdout
  assert (out / "live" / "b" / "vocals.flac").exists()


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [
    (["--codec=aiff"], "flag --codec=aiff: value should be one of <wav|flac|ogg|mp3|m4a>"),
    (["--bit_depth=8"], "flag --bit_depth=8: value should be one of <16|24|32>"),
    (["--codec=flac", "--bit_depth=32"], "--bit_depth=32: flac holds 16, 24 bits"),
    (["--filename={name}.{ext}"], "--filename={name}.{ext}: unknown field {name}"),
    (["--stems=guitar"], "--stems=guitar: not a source of this model (bass, drums, other, vocals; or no_<source>"),
    (["--device=tpu"], "--device=tpu: choose auto|cpu|gpu|gpu:N"),
    (["--device=gpu:0"], "--device=gpu:0: TensorFlow sees no GPU here"),
    (["--filename={stem}.{ext}"], "would overwrite"),
    (["--offset=9"], "--offset=9.0 s is past its end")])
def test_bad_flags_are_one_line_naming_the_flag(model_file, tmp_path, flags, message):
  import tensorflow as tf
  if "gpu:0" in flags[0] and tf.config.list_physical_devices("GPU"):
    pytest.skip("this machine has a GPU")
  (tmp_path / "b").mkdir()
  a, b = write_song(tmp_path / "a.wav", seconds=0.2), write_song(tmp_path / "b" / "b.wav", seconds=0.2)
  result = run_separate("--model", model_file, "--output_dir", tmp_path / "out", *flags, a, b)
  assert result.returncode == 1
  errors = result.stderr.strip().splitlines()
  per_input = "--offset" in flags[0] or "would overwrite" in message  # then a line per input and the count
  assert len(errors) == 1 or per_input, result.stderr
  assert message in errors[0], result.stderr
  if not per_input:
    assert not list((tmp_path / "out").rglob("*.wav")) if (tmp_path / "out").exists() else True
  if "would overwrite" in message:
    assert errors[0].startswith(f"separate.py: error: {b}: would overwrite") and f"written from {a}" in errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["guitar", "no_guitar"])
def test_stdout_of_a_stem_the_model_lacks_names_the_stdout_flag(model_file, tmp_path, stem):
  song = write_song(tmp_path / "a.wav", seconds=0.2)
  result = run_separate("--model", model_file, f"--stdout={stem}", song)
  assert result.returncode == 1 and result.stdout == ""
  assert result.stderr.strip().splitlines() == [
      f"separate.py: error: --stdout={stem}: not a source of this model (bass, drums, other, vocals; or "
      f"no_<source>, the sum of the others)"], result.stderr


@pytest.mark.slow
def test_the_command_on_the_cpu_writes_a_part_as_m4a_and_streams_no_vocals(model_file, tmp_path):
  song = write_song(tmp_path / "song.wav", seconds=1.0, rate=44100)
  result = run_separate("--model", model_file, "--output_dir", tmp_path / "out", "--device=cpu", "--codec=m4a",
                        "--bitrate=128k", "--offset=0.25", "--duration=0.5", "--stems=vocals,no_vocals", song)
  assert result.returncode == 0, result.stderr
  assert "-> " + str(tmp_path / "out" / "song") + "/{vocals,no_vocals}.m4a" in result.stdout
  stream, duration = ffprobe(tmp_path / "out" / "song" / "no_vocals.m4a")
  assert stream["codec_name"] == "aac" and abs(duration - 0.5) < 0.03
  piped = subprocess.run([sys.executable, "-m", "wave_unet_tf.separate", "--noprogress", "--model", model_file,
                          "--stdout=no_vocals", song], cwd=PROJECT_ROOT, capture_output=True, timeout=300)
  assert piped.returncode == 0, piped.stderr
  assert piped.stdout[:4] == b"RIFF" and len(piped.stdout) > 44100 * 2 * 4
