"""The network's structure, written once, describes the Keras model layer by layer."""

import pytest

import wave_unet_tf as wut
from wave_unet_tf.model.structure import filters, structure

CONFIGS = {
    "M5": wut.get_preset("M5").replace(num_layers=4, num_initial_filters=5),
    "M6": wut.get_preset("M6").replace(num_layers=3, num_initial_filters=4, merge_filter_size=3),
    "M1": wut.get_preset("M1").replace(num_layers=3, num_initial_filters=6, output_filter_size=3),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_convolution_of_the_structure_is_a_model_layer_of_that_shape(name):
  config = CONFIGS[name]
  model = wut.build_model(config)
  network = model.structure
  convs = [level.down_conv for level in network.levels] + [network.bottleneck]
  convs += [level.up_conv for level in network.up_path] + list(network.output_convs)
  for conv in convs:
    owner, _, inner = conv.layer.partition("/")
    layer = model.get_layer(owner)
    if inner:
      layer = next(c for c in layer.convs if c.name == inner)
    assert tuple(layer.kernel.shape) == (conv.kernel_size, conv.in_features, conv.filters), conv.layer
  for level in network.levels:
    model.get_layer(level.decimate), model.get_layer(level.crop_concat)
    upsample = model.get_layer(level.upsample)
    assert hasattr(upsample, "interp") == level.learned_upsampling
    if level.learned_upsampling:
      assert tuple(upsample.interp.shape) == (level.upsampled_features,)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_structure_accounts_for_every_trainable_weight(name):
  config = CONFIGS[name]
  network = structure(config)
  convs = [level.down_conv for level in network.levels] + [network.bottleneck]
  convs += [level.up_conv for level in network.up_path] + list(network.output_convs)
  count = sum(c.kernel_size * c.in_features * c.filters + c.filters for c in convs)
  count += sum(level.upsampled_features for level in network.levels if level.learned_upsampling)
  assert count == wut.build_model(config).count_params()


def test_levels_widen_by_the_initial_filters_and_the_up_path_mirrors_the_down_path():
  config = CONFIGS["M5"]
  network = structure(config)
  assert [level.down_conv.filters for level in network.levels] == [filters(config, i) for i in range(4)]
  assert network.bottleneck.filters == 5 * 5
  assert [level.up_conv.filters for level in network.up_path] == [20, 15, 10, 5]
  assert [level.up_conv.layer for level in network.up_path] == [f"up_conv_{i}" for i in range(4)]
