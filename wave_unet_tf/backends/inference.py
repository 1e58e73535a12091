"""A compiled inference-mode forward pass per backend: numpy in, ``{source: numpy}`` out.

- TensorFlow: one ``tf.function`` per window shape (with ``jit_compile``, compiled by XLA once).
- JAX: ``jax.jit`` of the function run statelessly over the model's variables (passed in at each call, so
  later weight changes take effect and the weights are not baked into the program as constants).
- PyTorch: eager under ``torch.inference_mode`` (no autograd records); ``torch.compile`` did not pay for
  the one-off windows of a song.

Each backend places the arrays on its default device (a GPU when there is one, `wave_unet_tf.backends.devices`).
"""

from typing import Callable, Dict

import numpy as np

from wave_unet_tf import backends


def compile_forward(model, inference: Callable, jit_compile: bool = True) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
  """``inference(mix)`` (Keras ops over ``model``'s variables, returning ``{source: tensor}``) compiled for
  the current backend, as a function of a float32 numpy ``mix``."""
  compile_for = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}.get(backends.name())
  if compile_for is None:
    raise backends.NeedsTensorFlowError(f"KERAS_BACKEND={backends.name()}: this package runs on "
                                        f"{', '.join(backends.NAMES)}")
  return compile_for(model, inference, jit_compile)


def _tensorflow(model, inference, jit_compile):
  import tensorflow as tf
  functions = {}

  def forward(mix):
    shape = tuple(mix.shape)
    function = functions.get(shape)
    if function is None:
      function = tf.function(inference, input_signature=[tf.TensorSpec(shape, tf.float32)],
                             jit_compile=jit_compile, reduce_retracing=False, autograph=False)
      functions[shape] = function
    outputs = function(tf.convert_to_tensor(mix, tf.float32))
    return {name: value.numpy() for name, value in outputs.items()}
  return forward


def _jax(model, inference, jit_compile):
  import jax
  import keras
  variables = list(model.variables)

  def stateless(values, mix):
    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
      return inference(mix)
  run = jax.jit(stateless) if jit_compile else stateless  # jax.jit keeps one program per shape

  def forward(mix):
    outputs = run([v.value for v in variables], jax.numpy.asarray(mix, jax.numpy.float32))
    return {name: np.asarray(value) for name, value in outputs.items()}
  return forward


def _torch(model, inference, jit_compile):
  del jit_compile  # eager: the window shapes of a song are few, and torch.compile's start-up did not pay
  import keras
  import torch

  def forward(mix):
    with torch.inference_mode():
      outputs = inference(keras.ops.convert_to_tensor(np.asarray(mix, np.float32)))
      return {name: value.detach().cpu().numpy() for name, value in outputs.items()}
  return forward


def compile_step(model, step: Callable, jit_compile: bool = True) -> Callable:
  """``step(mix, states) -> (sources, next states)`` (Keras ops over ``model``'s variables; ``states`` a list
  of tensors) compiled for JAX or PyTorch: numpy ``mix`` in, numpy sources out, the states left on the device
  between calls. TensorFlow's streaming step is its own (`wave_unet_tf.separation.streaming.KerasStreamStep`)."""
  name = backends.name()
  if name == "jax":
    import jax
    import keras
    variables = list(model.variables)

    def stateless(values, mix, states):
      with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        return step(mix, states)
    run = jax.jit(stateless) if jit_compile else stateless

    def call(mix, states):
      sources, states = run([v.value for v in variables], jax.numpy.asarray(mix, jax.numpy.float32), list(states))
      return [np.asarray(s) for s in sources], list(states)
    return call
  if name == "torch":
    import keras
    import torch

    def call(mix, states):
      with torch.inference_mode():
        sources, states = step(keras.ops.convert_to_tensor(np.asarray(mix, np.float32)),
                               [keras.ops.convert_to_tensor(s) for s in states])
        return [s.detach().cpu().numpy() for s in sources], list(states)
    return call
  raise backends.NeedsTensorFlowError(f"compile_step: KERAS_BACKEND={name} has its own streaming step")
