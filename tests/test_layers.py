"""Each custom layer against a numpy reference of the original's behaviour, plus Keras round trips."""

import keras
import numpy as np
import pytest

from wave_unet_tf.model import layers

RNG = np.random.default_rng(0)


def _features(frames=9, features=3, batch=2):
  return RNG.standard_normal((batch, frames, features)).astype(np.float32)


def numpy_linear_upsample(x, padding):
  following = np.concatenate([x[:, 1:], x[:, -1:]], axis=1)  # 'same' repeats the last frame
  between = (x + following) / 2
  out = np.stack([x, between], axis=2).reshape(x.shape[0], -1, x.shape[2])
  return out[:, :-1] if padding == "valid" else out


def numpy_learned_upsample(x, w, padding):
  s = 1 / (1 + np.exp(-w))
  following = np.concatenate([x[:, 1:], np.zeros_like(x[:, -1:])], axis=1)  # 'same' pads with zeros
  between = s * x + (1 - s) * following
  out = np.stack([x, between], axis=2).reshape(x.shape[0], -1, x.shape[2])
  return out[:, :-1] if padding == "valid" else out


def numpy_centre_crop(x, frames):
  start = (x.shape[1] - frames) // 2
  return x[:, start:start + frames]


def test_decimate_keeps_even_frames():
  x = _features(frames=11)
  np.testing.assert_array_equal(layers.Decimate()(x), x[:, 0::2])


@pytest.mark.parametrize("padding,frames", [("valid", 9), ("same", 9), ("valid", 2), ("same", 1)])
def test_linear_upsample_matches_resize_bilinear(padding, frames):
  x = _features(frames)
  out = np.asarray(layers.LinearUpsample(padding)(x))
  assert out.shape[1] == (2 * frames - 1 if padding == "valid" else 2 * frames)
  np.testing.assert_allclose(out, numpy_linear_upsample(x, padding), atol=1e-6)


def test_linear_upsample_valid_inserts_midpoints():
  out = np.asarray(layers.LinearUpsample("valid")(np.array([[[0.], [2.], [4.]]], np.float32)))
  np.testing.assert_array_equal(out.ravel(), [0, 1, 2, 3, 4])


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_learned_upsample_interpolates_with_sigmoid_weights(padding):
  x = _features(frames=7, features=4)
  layer = layers.LearnedUpsample(padding)
  layer.build(x.shape)
  w = RNG.standard_normal(4).astype(np.float32)
  layer.interp.assign(w)
  np.testing.assert_allclose(layer(x), numpy_learned_upsample(x, w, padding), atol=1e-6)


@pytest.mark.parametrize("skip_frames,frames", [(20, 14), (21, 14), (14, 14)])
def test_crop_concat_centre_crops_the_skip_connection(skip_frames, frames):
  skip, x = _features(skip_frames, 2), _features(frames, 5)
  out = np.asarray(layers.CropConcat()([skip, x]))
  # An odd surplus loses its extra frame at the end.
  start = (skip_frames - frames) // 2
  np.testing.assert_array_equal(out, np.concatenate([skip[:, start:start + frames], x], axis=-1))


@pytest.mark.parametrize("activation", ["tanh", "linear"])
@pytest.mark.parametrize("output_type", ["direct", "difference"])
@pytest.mark.parametrize("padding,kernel_size", [("valid", 1), ("valid", 3), ("same", 3)])
def test_source_outputs_direct_and_difference(activation, output_type, padding, kernel_size):
  features, mix = 3 * _features(12, 6), 3 * _features(16, 2)
  layer = layers.SourceOutputs(["a", "b", "c"], 2, output_type, activation, kernel_size, padding)
  training_out = [np.asarray(o) for o in layer([features, mix], training=True)]
  inference_out = [np.asarray(o) for o in layer([features, mix], training=False)]
  frames = 12 - kernel_size + 1 if padding == "valid" else 12
  assert all(o.shape == (2, frames, 2) for o in inference_out)
  if output_type == "difference":
    assert len(layer.convs) == 2
    residual = numpy_centre_crop(numpy_centre_crop(mix, 12), frames) - training_out[0] - training_out[1]
    np.testing.assert_allclose(training_out[2], residual, atol=1e-5)
    assert np.abs(training_out[2]).max() > 1  # not clipped while training
  estimated = len(layer.convs)
  for train, infer in zip(training_out[:estimated], inference_out[:estimated]):
    expected = np.clip(train, -1, 1) if activation == "linear" else train
    np.testing.assert_allclose(infer, expected, atol=1e-6)
    assert np.abs(infer).max() <= 1
  if output_type == "difference":
    # As the original: the residual of the (clipped) estimates, itself clipped at inference.
    residual = numpy_centre_crop(numpy_centre_crop(mix, 12), frames) - inference_out[0] - inference_out[1]
    np.testing.assert_allclose(inference_out[2], np.clip(residual, -1, 1), atol=1e-5)


def test_difference_output_sums_to_mixture():
  features, mix = _features(10, 4), 0.1 * _features(10, 2)
  outputs = layers.SourceOutputs(["acc", "voc"], 2, "difference", "tanh", 1, "valid")([features, mix], training=True)
  np.testing.assert_allclose(outputs[0] + outputs[1], mix, atol=1e-6)


LAYERS = [
    (layers.Decimate, {}, [(None, None, 3)]),
    (layers.LinearUpsample, {"padding": "same"}, [(None, None, 3)]),
    (layers.LinearUpsample, {"padding": "valid"}, [(None, None, 3)]),
    (layers.LearnedUpsample, {"padding": "valid"}, [(None, None, 3)]),
    (layers.LearnedUpsample, {"padding": "same"}, [(None, None, 3)]),
    (layers.CropConcat, {}, [(None, None, 2), (None, None, 3)]),
    (layers.SourceOutputs, {"source_names": ["a", "b"], "num_channels": 2, "output_type": "difference",
                            "activation": "linear", "kernel_size": 3, "padding": "valid"},
     [(None, None, 3), (None, None, 2)]),
]


def _apply(cls, kwargs, shapes):
  inputs = [keras.Input(shape=s[1:]) for s in shapes]
  outputs = cls(**kwargs)(inputs if len(inputs) > 1 else inputs[0])
  return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs)


@pytest.mark.parametrize("cls,kwargs,shapes", LAYERS, ids=lambda v: getattr(v, "__name__", None))
def test_layer_config_and_keras_file_round_trip(cls, kwargs, shapes, tmp_path):
  layer = cls(**kwargs)
  assert cls.from_config(layer.get_config()).get_config() == layer.get_config()
  model = _apply(cls, kwargs, shapes)
  # CropConcat crops its first input to its second; SourceOutputs crops its second (the mix) to its first.
  frames = (11, 15) if cls is layers.SourceOutputs else (15, 11)
  data = [RNG.standard_normal((2, frames[i], s[2])).astype(np.float32) for i, s in enumerate(shapes)]
  data = data if len(data) > 1 else data[0]
  path = str(tmp_path / "layer.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  for expected, got in zip(keras.tree.flatten(model(data)), keras.tree.flatten(restored(data))):
    np.testing.assert_array_equal(expected, got)


@pytest.mark.parametrize("cls,kwargs,shapes", LAYERS, ids=lambda v: getattr(v, "__name__", None))
def test_output_shape_copes_with_free_time_dimension(cls, kwargs, shapes):
  shapes = shapes if len(shapes) > 1 else shapes[0]
  out = cls(**kwargs).compute_output_shape(shapes)
  for shape in (out if isinstance(out, list) else [out]):
    assert shape[1] is None


@pytest.mark.parametrize("padding,frames,expected", [("valid", 8, 15), ("same", 8, 16)])
def test_output_shape_with_known_time_dimension(padding, frames, expected):
  assert layers.LinearUpsample(padding).compute_output_shape((1, frames, 4)) == (1, expected, 4)
  assert layers.Decimate().compute_output_shape((1, 15, 4)) == (1, 8, 4)


@pytest.mark.parametrize("kwargs", [{"padding": "full"}])
def test_bad_layer_arguments_are_value_errors(kwargs):
  with pytest.raises(ValueError, match="full"):
    layers.LinearUpsample(**kwargs)
  with pytest.raises(ValueError, match="two sources"):
    layers.SourceOutputs(["a"], 1, "difference")


def test_difference_residual_crops_the_mix_twice_as_the_original():
  # Odd surpluses (17 -> 12 -> 11 frames): the original crops the mix to the features, then to the outputs,
  # which starts one frame earlier than a single crop from 17 to 11 would.
  features, mix = _features(12, 4), _features(17, 2)
  outputs = layers.SourceOutputs(["a", "b"], 2, "difference", "tanh", 2, "valid")([features, mix], training=True)
  twice = numpy_centre_crop(numpy_centre_crop(mix, 12), 11)
  np.testing.assert_allclose(np.asarray(outputs[0]) + np.asarray(outputs[1]), twice, atol=1e-6)
  assert not np.allclose(twice, numpy_centre_crop(mix, 11))
