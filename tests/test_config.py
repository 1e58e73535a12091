import json

import pytest

import wave_unet_tf as wut
from wave_unet_tf.config import Config, ORIGINAL_NAMES, PRESETS
from wave_unet_tf.sizes import context_frames, sizes_for_bottleneck

from conftest import ORIGINAL_TF1

DOCUMENTED_SIZES = {
    "M1": (16384, 16384), "M2": (16384, 16384), "M3": (147443, 16389), "M4": (147443, 16389),
    "M5": (147443, 16389), "M5-HighSR": (147443, 16389), "M6": (147443, 16389), "M7": (233459, 102405),
}


@pytest.mark.parametrize("preset,sizes", DOCUMENTED_SIZES.items())
def test_preset_io_sizes_match_the_original(preset, sizes):
  assert wut.io_sizes(wut.get_preset(preset)) == sizes


@pytest.mark.parametrize("original,paper", ORIGINAL_NAMES.items())
def test_original_config_names_are_aliases(original, paper):
  assert wut.get_preset(original) is wut.get_preset(paper)


def test_paper_preset_fields():
  m5_high = wut.get_preset("M5-HighSR")
  assert (m5_high.sample_rate, m5_high.num_channels, m5_high.upsampling, m5_high.output_type, m5_high.context) == (
      44100, 2, "learned", "difference", True)
  assert wut.get_preset("M6").source_names == ("bass", "drums", "other", "vocals")
  m7 = wut.get_preset("M7")
  assert (m7.num_initial_filters, m7.num_frames, m7.batch_size, m7.sample_rate) == (34, 98560, 4, 8192)
  m1 = wut.get_preset("M1")
  assert (m1.context, m1.output_type, m1.num_channels, m1.sample_rate) == (False, "direct", 1, 22050)
  for config in PRESETS.values():
    assert (config.num_layers, config.filter_size, config.merge_filter_size, config.learning_rate,
            config.steps_per_epoch, config.patience) == (12, 15, 5, 1e-4, 2000, 20)


@pytest.mark.parametrize("name", ["tiny_m5", "tiny_m6", "tiny_direct_multi", "tiny_m1_same", "deep_m5_thin"])
def test_io_sizes_reproduce_original_get_padding(name):
  recorded = json.loads((ORIGINAL_TF1 / name / "config.json").read_text())
  config = Config.from_dict(recorded["config"])
  assert wut.io_sizes(config) == (recorded["input_shape"][1], recorded["output_shape"][1])


@pytest.mark.parametrize("manifest", ["M4_baseline_stereo", "M5_full", "M6_full_multi_instrument"])
def test_io_sizes_match_manifests(manifest):
  recorded = json.loads((ORIGINAL_TF1 / f"{manifest}.variables.json").read_text())
  config = Config.from_dict(recorded["config"])
  assert wut.io_sizes(config, 16384) == (recorded["input_shape"][1], recorded["output_shape"][1])


@pytest.mark.parametrize("bottleneck", [2, 3, 10])
def test_context_is_constant_and_sizes_grow_on_the_grid(bottleneck):
  config = wut.get_preset("M5")
  inputs, outputs = sizes_for_bottleneck(config, bottleneck)
  next_inputs, next_outputs = sizes_for_bottleneck(config, bottleneck + 1)
  assert next_inputs - inputs == next_outputs - outputs == 2 ** config.num_layers
  assert inputs - outputs == context_frames(config) == 147443 - 16389


@pytest.mark.parametrize("field,value", [
    ("num_layers", 0), ("num_initial_filters", -3), ("upsampling", "cubic"), ("output_type", "ratio"),
    ("output_activation", "relu"), ("num_channels", 3), ("source_names", ()), ("source_names", ("a", "a")),
    ("sample_rate", 0), ("batch_size", 1.5), ("num_frames", 100), ("patience", -1), ("amplify_min", 2.0),
])
def test_invalid_field_is_an_error_naming_field_and_value(field, value):
  with pytest.raises(ValueError, match=field) as error:
    wut.get_preset("M1").replace(**{field: value})
  assert repr(value) in str(error.value) or field == "source_names"


def test_difference_output_needs_two_sources():
  with pytest.raises(ValueError, match="source_names"):
    wut.get_preset("M5").replace(source_names=["vocals"])


def test_unknown_preset_lists_the_valid_ones():
  with pytest.raises(ValueError, match="M5-HighSR.*full_44KHz"):
    wut.get_preset("M9")


def test_unknown_field_is_an_error():
  with pytest.raises(ValueError, match="unknown config field 'num_layer'"):
    wut.get_preset("M5").replace(num_layer=3)


def test_config_is_frozen_and_round_trips_through_json(tmp_path):
  config = wut.get_preset("M6").replace(num_layers=5, source_names=["drums", "rest"])
  with pytest.raises(Exception):
    config.num_layers = 3
  path = tmp_path / "config.json"
  path.write_text(config.to_json())
  assert Config.from_json_file(str(path)) == config


def test_original_config_keys_are_understood():
  original = {"mono_downmix": False, "expected_sr": 44100, "init_sup_sep_lr": 1e-5, "epoch_it": 10,
              "worse_epochs": 3, "musdb_path": "/data", "task": "voice", "context": True,
              "output_type": "difference"}
  config = Config.from_dict(original)
  assert (config.num_channels, config.sample_rate, config.learning_rate, config.steps_per_epoch,
          config.patience) == (2, 44100, 1e-5, 10, 3)
