"""The loss, the optimizer and one distributed training step, as the original's ``Training.py``."""

import keras
import tensorflow as tf

from wave_unet_tf.config import Config


def per_example_loss(targets, estimates, source_names):
  """Mean over sources of each source's mean squared error: ``[batch]``.

  Averaged over a batch this is the original's loss: ``sum_s mean((target_s - estimate_s)^2) / num_sources``.
  """
  errors = [tf.reduce_mean(tf.square(tf.cast(targets[s], tf.float32) - tf.cast(estimates[s], tf.float32)),
                           axis=[1, 2]) for s in source_names]
  return tf.add_n(errors) / float(len(source_names))


def make_optimizer(config: Config, learning_rate: float = None) -> keras.optimizers.Optimizer:
  """Adam with TF1's defaults (epsilon 1e-8, not Keras' 1e-7), as the original's ``AdamOptimizer``.

  The learning rate is a variable so the fine-tuning stage can lower it in place.
  """
  optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate if learning_rate is None else learning_rate,
                                    beta_1=config.adam_beta_1, beta_2=config.adam_beta_2,
                                    epsilon=config.adam_epsilon)
  if keras.mixed_precision.global_policy().name == "mixed_float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def make_train_step(model, optimizer, strategy, global_batch_size, jit_compile=False):
  """A ``tf.function`` taking a distributed batch ``(mix, {source: target})`` and returning the global loss.

  Each replica's loss is its examples' summed loss over the *global* batch size, so the all-reduced gradient
  and loss equal those of one device seeing the whole batch. ``jit_compile`` compiles each replica's forward
  and backward pass with XLA (the optimizer update stays outside, where strategies aggregate gradients).
  """
  source_names = model.wave_unet_config.source_names
  if not optimizer.built:
    with strategy.scope():  # slots are created eagerly, as mirrored variables, not inside a replica context
      optimizer.build(model.trainable_variables)

  @tf.function(jit_compile=jit_compile)
  def loss_and_gradients(mix, targets):
    with tf.GradientTape() as tape:
      estimates = model(mix, training=True)
      loss = tf.reduce_sum(per_example_loss(targets, estimates, source_names)) / global_batch_size
      scaled = optimizer.scale_loss(loss)  # the loss scale of mixed_float16; a no-op otherwise
    return loss, tape.gradient(scaled, model.trainable_variables)

  def replica_step(mix, targets):
    loss, gradients = loss_and_gradients(mix, targets)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss

  @tf.function
  def step(batch):
    mix, targets = batch
    losses = strategy.run(replica_step, args=(mix, targets))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

  return step
