"""The device part of the backends, in process: ``--device`` values, out-of-memory errors, and windows sized to
an accelerator's free memory."""

import pytest

from wave_unet_tf import backends, sizes
from wave_unet_tf.backends import devices
from wave_unet_tf.config import get_preset
from wave_unet_tf.separation import separator


@pytest.mark.parametrize("value,parsed", [("auto", ("auto", None)), (None, ("auto", None)), ("CPU", ("cpu", None)),
                                          ("gpu", ("gpu", None)), ("gpu:1", ("gpu", 1))])
def test_device_values(value, parsed):
  assert devices.parse(value) == parsed


@pytest.mark.parametrize("value", ["tpu", "gpu:x", "gpu:-1"])
def test_a_bad_device_names_the_flag(value):
  with pytest.raises(ValueError, match=rf"--device={value}: choose auto\|cpu\|gpu\|gpu:N"):
    devices.parse(value)


def test_out_of_memory_is_recognised_on_every_backend_and_nothing_else():
  assert devices.out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"))
  assert devices.out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
  assert not devices.out_of_memory(ValueError("song.wav: no audio samples"))


def test_windows_fill_half_an_accelerators_free_memory_and_stay_30_s_on_a_cpu(monkeypatch):
  config = get_preset("M5-HighSR")
  per_second = sizes.activation_bytes_per_second(config)
  assert 50e6 < per_second < 500e6  # a 3-minute song's activations fit an H200's 141 GB, not a laptop GPU's 8
  monkeypatch.setattr(devices, "free_memory", lambda: None)
  assert separator.device_window_seconds(config) == separator.DEFAULT_WINDOW_SECONDS
  monkeypatch.setattr(devices, "free_memory", lambda: 140e9)
  assert separator.device_window_seconds(config) == pytest.approx(0.5 * 140e9 / per_second)
  assert separator.device_window_seconds(config) > 180  # a 3-minute song in one pass
  monkeypatch.setattr(devices, "free_memory", lambda: 1e9)
  assert separator.device_window_seconds(config) == separator.DEFAULT_WINDOW_SECONDS  # never below the CPU's


def test_tensorflow_only_features_name_themselves_and_the_way_out(monkeypatch):
  monkeypatch.setattr(backends, "name", lambda: "jax")
  with pytest.raises(backends.NeedsTensorFlowError, match=r"^live streaming runs on the TensorFlow backend only "
                     r"\(KERAS_BACKEND=jax now\): run it with KERAS_BACKEND=tensorflow$"):
    backends.require_tensorflow("live streaming")
