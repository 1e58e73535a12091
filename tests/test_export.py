"""SavedModel and TFLite exports, checked with TensorFlow's own tools and the standalone LiteRT interpreter."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import wave_unet_tf as wut
from wave_unet_tf import audio
from wave_unet_tf.deploy import lite_graph, saved_model, tflite
from wave_unet_tf.model.saving import save_model

from conftest import MUSDB_SAMPLE, assert_quiet

SMALL = wut.get_preset("M5").replace(num_layers=4, num_initial_filters=6, num_frames=1000)


def _snr_db(reference, estimate):
  return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A small random model exported as .keras, SavedModel and the three TFLite variants."""
  folder = tmp_path_factory.mktemp("export")
  keras.utils.set_random_seed(1)
  model = wut.build_model(SMALL)
  keras_path = str(folder / "model.keras")
  save_model(model, keras_path)
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.export", f"--model={keras_path}",
                           f"--saved_model_dir={folder / 'saved_model'}", f"--tflite={folder / 'none.tflite'}"],
                          check=True, capture_output=True, text=True)
  assert_quiet(result.stdout, result.stderr)
  for quantize in ("float16", "dynamic"):
    subprocess.run([sys.executable, "-m", "wave_unet_tf.export", f"--model={keras_path}",
                    f"--tflite={folder / (quantize + '.tflite')}", f"--quantize={quantize}"],
                   check=True, capture_output=True)
  return model, folder


def test_saved_model_cli_lists_both_signatures(exported):
  _, folder = exported
  shown = subprocess.run(["saved_model_cli", "show", "--dir", str(folder / "saved_model"), "--all"],
                         check=True, capture_output=True, text=True).stdout
  serving = shown.split("signature_def['serving_default']")[1]
  separate = shown.split("signature_def['separate']")[1].split("signature_def[")[0]
  input_frames, output_frames = wut.io_sizes(SMALL)
  assert "inputs['mix']" in serving and f"shape: (-1, {input_frames}, 2)" in serving
  assert "outputs['vocals']" in serving and f"shape: (-1, {output_frames}, 2)" in serving
  assert "inputs['waveform']" in separate and "shape: (-1, 2)" in separate
  assert "outputs['accompaniment']" in separate and "DT_FLOAT" in separate
  info = json.loads((folder / "saved_model" / "assets" / "wave_unet_config.json").read_text())
  assert info["config"]["source_names"] == ["accompaniment", "vocals"] and info["input_frames"] == input_frames


def test_saved_model_cli_run_separates_an_npy_file(exported, tmp_path):
  model, folder = exported
  song = np.random.default_rng(0).uniform(-0.5, 0.5, (3000, 2)).astype(np.float32)
  np.save(tmp_path / "song.npy", song)
  subprocess.run(["saved_model_cli", "run", "--dir", str(folder / "saved_model"), "--tag_set", "serve",
                  "--signature_def", "separate", "--inputs", f"waveform={tmp_path / 'song.npy'}",
                  "--outdir", str(tmp_path / "out")], check=True, capture_output=True)
  vocals = np.load(tmp_path / "out" / "vocals.npy")
  expected = wut.Separator(model, window_seconds=0.05).separate_at_model_rate(song)["vocals"]
  assert vocals.shape == song.shape
  np.testing.assert_allclose(vocals, expected, atol=1e-5)


@pytest.mark.parametrize("signature", ["serving_default", "separate"])
def test_serving_predict_request_matches_the_signature_and_is_answered(exported, signature):
  from tensorflow_serving.apis import predict_pb2
  model, folder = exported
  loaded = tf.saved_model.load(str(folder / "saved_model"))
  function = loaded.signatures[signature]
  (name, spec), = function.structured_input_signature[1].items()
  frames = wut.io_sizes(SMALL)[0]
  data = np.random.default_rng(2).uniform(-0.5, 0.5, (2, frames, 2) if signature == "serving_default"
                                          else (2500, 2)).astype(np.float32)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "wave_unet"
  request.model_spec.signature_name = signature
  request.inputs[name].CopyFrom(tf.make_tensor_proto(data))
  assert name == ("mix" if signature == "serving_default" else "waveform")
  proto = request.inputs[name]
  assert tf.dtypes.as_dtype(proto.dtype) == spec.dtype
  assert spec.shape.is_compatible_with([d.size for d in proto.tensor_shape.dim])
  answer = function(**{name: tf.make_ndarray(proto)})
  assert set(answer) == {"accompaniment", "vocals"}
  if signature == "serving_default":
    expected = model(data, training=False)
    for source in answer:
      np.testing.assert_allclose(answer[source], expected[source], atol=1e-5)
  else:
    expected = wut.Separator(model, window_seconds=10).separate_at_model_rate(data)
    for source in answer:
      np.testing.assert_allclose(answer[source], expected[source], atol=1e-5)


def test_tflite_uses_builtin_ops_only_and_runs_without_tensorflow(exported, tmp_path):
  model, folder = exported
  frames = wut.io_sizes(SMALL)[0]
  mix = np.random.default_rng(3).uniform(-0.5, 0.5, (1, frames, 2)).astype(np.float32)
  np.save(tmp_path / "mix.npy", mix)
  script = textwrap.dedent(f"""
      import sys, numpy as np
      from ai_edge_litert.interpreter import Interpreter
      runner = Interpreter(model_path={str(folder / 'none.tflite')!r}).get_signature_runner("serving_default")
      out = runner(mix=np.load({str(tmp_path / 'mix.npy')!r}))
      np.save({str(tmp_path / 'vocals.npy')!r}, out["vocals"])
      assert "tensorflow" not in sys.modules and "wave_unet_tf" not in sys.modules
  """)
  subprocess.run([sys.executable, "-I", "-c", script], check=True, capture_output=True, cwd=tmp_path)
  np.testing.assert_allclose(np.load(tmp_path / "vocals.npy"), model(mix, training=False)["vocals"], atol=1e-5)
  from tensorflow.lite.python import schema_py_generated as schema
  flat = schema.Model.GetRootAsModel((folder / "none.tflite").read_bytes(), 0)
  codes = [flat.OperatorCodes(i) for i in range(flat.OperatorCodesLength())]
  assert all(c.CustomCode() is None for c in codes)  # Select TF ops would appear as custom "Flex" ops


def test_exports_agree_with_keras_and_float16_keeps_40_db_on_a_real_song(exported):
  model, folder = exported
  mixture, rate = audio.load(str(next(MUSDB_SAMPLE.glob("train/*.stem.mp4"))), channels=2)
  song = audio.resample(mixture, rate, SMALL.sample_rate)[:4 * SMALL.sample_rate]
  reference = wut.Separator(model, window_seconds=0.2).separate_at_model_rate(song)
  results = {}
  for name in ("saved_model", "none.tflite", "float16.tflite", "dynamic.tflite"):
    results[name] = wut.Separator(str(folder / name)).separate_at_model_rate(song)
  for source in SMALL.source_names:
    for name in ("saved_model", "none.tflite"):
      np.testing.assert_allclose(results[name][source], reference[source], atol=1e-5, err_msg=name)
    assert _snr_db(results["none.tflite"][source], results["float16.tflite"][source]) > 40
    assert _snr_db(results["none.tflite"][source], results["dynamic.tflite"][source]) > 10


def test_export_refuses_to_overwrite_and_bad_models(exported, tmp_path):
  _, folder = exported
  keras_path = str(folder / "model.keras")
  cases = [
      ([f"--model={keras_path}", f"--saved_model_dir={folder / 'saved_model'}"], "already exists"),
      ([f"--model={tmp_path / 'nothing.keras'}", f"--tflite={tmp_path / 'a.tflite'}"], "no such file"),
      ([f"--model={folder / 'none.tflite'}", f"--saved_model_dir={tmp_path / 'x'}"], "needs a .keras model"),
      ([f"--model={keras_path}", f"--saved_model_dir={tmp_path / 'missing' / 'x'}"], "does not exist"),
      ([f"--model={keras_path}", f"--tflite={tmp_path / 'missing' / 'a.tflite'}"], "does not exist"),
  ]
  (tmp_path / "junk.keras").write_text("not a model")
  cases.append(([f"--model={tmp_path / 'junk.keras'}", f"--tflite={tmp_path / 'b.tflite'}"], "not a readable"))
  for args, message in cases:
    result = subprocess.run([sys.executable, "-m", "wave_unet_tf.export", *args], capture_output=True, text=True)
    assert result.returncode != 0, args
    assert message in result.stderr.strip().splitlines()[-1], result.stderr
    assert "Traceback" not in result.stderr
  assert not (tmp_path / "x").exists() and not (tmp_path / "a.tflite").exists()


def test_interrupted_export_leaves_nothing_in_place(tmp_path, monkeypatch):
  model = wut.build_model(SMALL)

  def crash(*args, **kwargs):
    raise KeyboardInterrupt

  # Killed after the SavedModel is written, before its config asset is: nothing may be left in place.
  monkeypatch.setattr(saved_model.json, "dump", crash)
  with pytest.raises(KeyboardInterrupt):
    saved_model.export_saved_model(model, str(tmp_path / "model"))
  assert os.listdir(tmp_path) == []


def test_written_files_are_readable_by_other_users(exported):
  _, folder = exported
  for name in ("model.keras", "none.tflite"):
    assert os.stat(folder / name).st_mode & 0o044 == 0o044, name


def _compiled_with_xla(signature) -> bool:
  """Whether a loaded signature calls a function that XLA must compile."""
  library = signature.graph.as_graph_def().library
  return any(f.attr["_XlaMustCompile"].b for f in library.function if "_XlaMustCompile" in f.attr)


def test_saved_model_signatures_are_compiled_and_have_uncompiled_twins_of_the_same_function(exported, tmp_path):
  model, folder = exported
  loaded = tf.saved_model.load(str(folder / "saved_model"))
  song = np.random.default_rng(4).uniform(-0.5, 0.5, (2600, 2)).astype(np.float32)
  expected = wut.Separator(model, window_seconds=10).separate_at_model_rate(song)
  for name, compiled in (("separate", True), ("separate_noxla", False)):
    signature = loaded.signatures[name]
    assert _compiled_with_xla(signature) == compiled, name
    answer = signature(waveform=song)
    for source in SMALL.source_names:
      np.testing.assert_allclose(answer[source], expected[source], atol=1e-5, err_msg=name)
  mix = np.random.default_rng(7).uniform(-0.5, 0.5, (2, wut.io_sizes(SMALL)[0], 2)).astype(np.float32)
  assert _compiled_with_xla(loaded.signatures["serving_default"])
  assert not _compiled_with_xla(loaded.signatures["serving_default_noxla"])
  np.testing.assert_allclose(loaded.signatures["serving_default_noxla"](mix=mix)["vocals"],
                             model(mix, training=False)["vocals"], atol=1e-5)
  # --noxla: only the uncompiled signatures.
  subprocess.run([sys.executable, "-m", "wave_unet_tf.export", f"--model={folder / 'model.keras'}", "--noxla",
                  f"--saved_model_dir={tmp_path / 'portable'}"], check=True, capture_output=True)
  portable = tf.saved_model.load(str(tmp_path / "portable")).signatures
  assert set(portable) == {"serving_default", "separate"}
  assert not any(_compiled_with_xla(signature) for signature in portable.values())


@pytest.mark.parametrize("changes", [
    dict(),  # M5: learned upsampling, difference output
    dict(upsampling="linear", num_layers=3, filter_size=9),  # M4-like
    dict(source_names=("bass", "drums", "other", "vocals"), num_layers=5, num_initial_filters=4),  # M6-like
    dict(output_type="direct", merge_filter_size=3, output_filter_size=3, num_channels=1)])
@pytest.mark.parametrize("output_frames", [1000, 1237])
def test_tflite_graph_computes_the_keras_model(changes, output_frames):
  config = SMALL.replace(**changes)
  keras.utils.set_random_seed(5)
  model = wut.build_model(config)
  plan = saved_model.fixed_window_plan(config, output_frames / config.sample_rate)
  mix = np.random.default_rng(6).uniform(-0.9, 0.9, (2, plan.input_frames, config.num_channels)).astype(np.float32)
  graph = tf.function(lambda x: lite_graph.forward(model, x), autograph=False)
  got, expected = graph(tf.constant(mix)), model(mix, training=False)
  for source in config.source_names:
    np.testing.assert_allclose(got[source], expected[source], atol=1e-5, err_msg=source)


def test_tflite_graph_is_delegated_whole_to_xnnpack_with_a_thread_per_core(exported):
  _, folder = exported
  from ai_edge_litert.interpreter import Interpreter
  for name in ("none.tflite", "float16.tflite", "dynamic.tflite"):
    interpreter = Interpreter(model_path=str(folder / name), num_threads=2)
    interpreter.allocate_tensors()
    operators = [op["op_name"] for op in interpreter._get_ops_details()]
    # One partition: no op left to TFLite's reference kernels between XNNPACK's (stride-2 slices were).
    assert operators.count("DELEGATE") == 1, (name, operators)
  assert tflite.TFLiteForwardPass(str(folder / "none.tflite")).num_threads == tflite.default_threads()
  assert tflite.TFLiteForwardPass(str(folder / "none.tflite"), num_threads=1).num_threads == 1


@pytest.mark.slow
def test_tflite_files_of_a_paper_model_keep_to_the_weights_size(tmp_path):
  model = wut.build_model(wut.get_preset("M5"))
  weights = sum(int(np.prod(w.shape)) for w in model.weights) * 4
  sizes = {q: os.path.getsize(tflite.export_tflite(model, str(tmp_path / f"{q}.tflite"), q, window_seconds=1.0))
           for q in ("none", "float16")}
  assert weights < sizes["none"] < 1.15 * weights  # the folded up-path kernels hold 8/5 of their weights
  assert sizes["float16"] < 0.52 * sizes["none"]
