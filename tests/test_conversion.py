"""The original's TF1 checkpoints convert and reproduce the original graph's outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import wave_unet_tf as wut
from wave_unet_tf.config import Config
from wave_unet_tf.conversion.tf1_checkpoint import (CheckpointMismatchError, original_variables,
                                                    read_checkpoint)

from conftest import ORIGINAL_MODELS, ORIGINAL_TF1, assert_quiet

MANIFESTS = {"M4": "M4_baseline_stereo", "M5": "M5_full", "M6": "M6_full_multi_instrument",
             "M5-HighSR": "M5_full"}
PARAMETERS = {"M4": 10_263_390, "M5": 10_265_550, "M6": 10_263_498, "M5-HighSR": 10_265_550}


def _recorded_config(name):
  return Config.from_dict(json.loads((ORIGINAL_TF1 / name / "config.json").read_text())["config"])


@pytest.mark.parametrize("name", ORIGINAL_MODELS)
def test_converted_checkpoint_reproduces_original_outputs(name):
  config = _recorded_config(name)
  model = wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / name), config)
  reference = np.load(ORIGINAL_TF1 / name / "reference.npz")
  outputs = model(reference["input"], training=False)
  for source in config.source_names:
    assert outputs[source].shape == reference[source].shape
    np.testing.assert_allclose(outputs[source], reference[source], atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", MANIFESTS)
def test_name_mapping_covers_exactly_the_manifest(preset):
  manifest = json.loads((ORIGINAL_TF1 / f"{MANIFESTS[preset]}.variables.json").read_text())
  expected = {name: tuple(shape) for name, shape in manifest["variables"]
              if name.startswith("separator/") and not name.startswith("separator_solver")}
  mapped = {name: shape for name, shape, _ in original_variables(wut.get_preset(preset))}
  assert mapped == expected


@pytest.mark.parametrize("preset", MANIFESTS)
def test_preset_parameter_counts_match_the_original(preset):
  model = wut.build_model(wut.get_preset(preset))
  assert model.count_params() == PARAMETERS[preset]
  mapped = {keras_name for _, _, keras_name in original_variables(model.wave_unet_config)}
  assert mapped == {w.path for w in model.trainable_weights}


def test_variables_map_in_creation_order_not_string_order():
  names = [name for name, _, _ in original_variables(wut.get_preset("M5"))]
  assert names.index("separator/conv1d_2/kernel") < names.index("separator/conv1d_10/kernel")
  assert names[names.index("separator/conv1d_12/bias") + 1] == "separator/interp_0"


def test_optimizer_state_and_global_step_are_skipped():
  values = read_checkpoint(str(ORIGINAL_TF1 / "tiny_m5"))
  assert values and all(n.startswith("separator/") for n in values)


def _write_tf1_checkpoint(prefix, values):
  names = list(values)
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
  return str(prefix)


def _tiny_m5_values():
  return read_checkpoint(str(ORIGINAL_TF1 / "tiny_m5"))


def test_missing_variable_names_it(tmp_path):
  values = _tiny_m5_values()
  del values["separator/conv1d_3/bias"]
  prefix = _write_tf1_checkpoint(tmp_path / "ckpt-1", values)
  with pytest.raises(CheckpointMismatchError, match=r"separator/conv1d_3/bias \[32\] .* missing"):
    wut.convert_tf1_checkpoint(prefix, _recorded_config("tiny_m5"))


def test_left_over_variable_names_it(tmp_path):
  values = _tiny_m5_values()
  values["separator/conv1d_10/kernel"] = np.zeros((1, 10, 2), np.float32)
  prefix = _write_tf1_checkpoint(tmp_path / "ckpt-1", values)
  with pytest.raises(CheckpointMismatchError, match=r"separator/conv1d_10/kernel \[1, 10, 2\] .* not in"):
    wut.convert_tf1_checkpoint(prefix, _recorded_config("tiny_m5"))


def test_wrong_shape_names_both_shapes():
  with pytest.raises(CheckpointMismatchError,
                     match=r"separator/conv1d/kernel has shape \[15, 2, 8\] .* but \[15, 1, 8\]"):
    wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / "tiny_m5"), _recorded_config("tiny_m5").replace(num_channels=1))


def test_wrong_preset_says_which_preset_the_checkpoint_looks_like(tmp_path):
  manifest = json.loads((ORIGINAL_TF1 / "M6_full_multi_instrument.variables.json").read_text())
  values = {name: np.zeros(shape, np.float32) for name, shape in manifest["variables"]
            if name.startswith("separator/")}
  prefix = _write_tf1_checkpoint(tmp_path / "full_multi_instrument-1", values)
  with pytest.raises(CheckpointMismatchError, match=r"looks like preset M6 \(full_multi_instrument\)"):
    wut.convert_tf1_checkpoint(prefix, "M5-HighSR")


@pytest.mark.parametrize("path", ["no/such/checkpoint", "."])
def test_not_a_checkpoint_is_an_error(path, tmp_path):
  with pytest.raises(CheckpointMismatchError, match="checkpoint"):
    wut.convert_tf1_checkpoint(str(tmp_path / path), "M5")


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
  path = str(tmp_path / "m.keras")
  model = wut.convert_tf1_checkpoint(str(ORIGINAL_TF1 / "tiny_m6"), _recorded_config("tiny_m6"), output=path)
  restored = wut.load_model(path)
  assert restored.wave_unet_config == model.wave_unet_config
  mix = np.load(ORIGINAL_TF1 / "tiny_m6" / "reference.npz")["input"]
  for source, expected in model(mix, training=False).items():
    np.testing.assert_array_equal(restored(mix, training=False)[source], expected)


@pytest.mark.slow
def test_convert_command_writes_a_loadable_model(tmp_path):
  output = tmp_path / "tiny_m5.keras"
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.convert", f"--checkpoint={ORIGINAL_TF1 / 'tiny_m5'}",
                           f"--config_json={ORIGINAL_TF1 / 'tiny_m5' / 'config.json'}", f"--output={output}"],
                          check=True, capture_output=True, text=True)
  assert_quiet(result.stdout, result.stderr)
  reference = np.load(ORIGINAL_TF1 / "tiny_m5" / "reference.npz")
  outputs = wut.load_model(str(output))(reference["input"], training=False)
  np.testing.assert_allclose(outputs["vocals"], reference["vocals"], atol=1e-5)


@pytest.mark.slow
def test_convert_command_mismatch_is_one_line_and_writes_nothing(tmp_path):
  output = tmp_path / "m.keras"
  result = subprocess.run([sys.executable, "-m", "wave_unet_tf.convert", f"--checkpoint={ORIGINAL_TF1 / 'tiny_m5'}",
                           "--preset=M5", f"--output={output}"], capture_output=True, text=True)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("convert.py: error:") and "separator/conv1d/kernel" in last
  assert "Traceback" not in result.stderr
  assert not output.exists()


def test_folder_whose_checkpoint_file_names_another_machine(tmp_path):
  import shutil
  for f in (ORIGINAL_TF1 / "tiny_m6").iterdir():
    if f.name.startswith("tiny_m6-"):
      shutil.copy(f, tmp_path)
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/mnt/windaten/checkpoints/tiny_m6-4242"\n')
  model = wut.convert_tf1_checkpoint(str(tmp_path), _recorded_config("tiny_m6"))
  mix = np.load(ORIGINAL_TF1 / "tiny_m6" / "reference.npz")["input"]
  assert model(mix, training=False)["bass"].shape[1] == 781
