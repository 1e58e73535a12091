"""The device the backend computes on: ``--device`` (`use`), its name (`describe`), its free memory (for
window sizes, `free_memory`) and its out-of-memory errors (`out_of_memory`). Imports only the current
backend's framework, so a JAX or PyTorch machine needs no TensorFlow."""

import sys

from wave_unet_tf import backends

DEVICES = "auto|cpu|gpu|gpu:N"


def parse(device) -> tuple:
  """``(kind, index)``: ``auto|cpu|gpu`` and the GPU's number for ``gpu:N`` (else None)."""
  spec = str(device or "auto").strip().lower()
  index = None
  if spec.startswith("gpu:"):
    try:
      index = int(spec[4:])
    except ValueError:
      index = -1
    if index < 0:
      raise ValueError(f"--device={device}: choose {DEVICES}")
    spec = "gpu"
  if spec not in ("auto", "cpu", "gpu"):
    raise ValueError(f"--device={device}: choose {DEVICES}")
  return spec, index


def _check(device, gpus: int, index):
  if gpus == 0:
    raise ValueError(f"--device={device}: {backends.title()} sees no GPU here (try --device=cpu)")
  if index is not None and index >= gpus:
    raise ValueError(f"--device={device}: there are {gpus} GPUs (gpu:0 to gpu:{gpus - 1})")


def use(device="auto"):
  """Computes on ``device``: ``auto`` (a GPU if there is one, else the CPU), ``cpu``, ``gpu`` (an error
  without one) or ``gpu:N``. Call it before the first computation."""
  kind, index = parse(device)
  return {"tensorflow": _use_tensorflow, "jax": _use_jax, "torch": _use_torch}[backends.name()](device, kind, index)


def _use_tensorflow(device, kind, index):
  import tensorflow as tf
  gpus = tf.config.list_physical_devices("GPU")
  if kind == "gpu":
    _check(device, len(gpus), index)
  visible = [] if kind == "cpu" else gpus if index is None else [gpus[index]]
  try:
    tf.config.set_visible_devices(visible, "GPU")
    for gpu in visible:  # grow as needed instead of taking all at once
      tf.config.experimental.set_memory_growth(gpu, True)
  except RuntimeError as e:  # TensorFlow started its devices already
    raise RuntimeError(f"--device={device}: must be chosen before TensorFlow runs anything ({e})") from None
  return visible


def _use_jax(device, kind, index):
  import jax
  gpus = _jax_gpus()
  if kind == "gpu":
    _check(device, len(gpus), index)
  chosen = jax.devices("cpu")[0] if kind == "cpu" or not gpus else gpus[index or 0]
  jax.config.update("jax_default_device", chosen)
  return [chosen] if chosen.platform != "cpu" else []


def _jax_gpus():
  import jax
  try:
    return jax.devices("gpu")
  except RuntimeError:  # no GPU backend in this jaxlib
    return []


def _use_torch(device, kind, index):
  import torch
  gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
  if kind == "gpu":
    _check(device, gpus, index)
  chosen = "cpu" if kind == "cpu" or not gpus else f"cuda:{index or 0}"
  from keras.src.backend.torch import core  # Keras' default device for new tensors, for every thread
  core.DEFAULT_DEVICE = chosen
  return [chosen] if chosen != "cpu" else []


def describe() -> str:
  """The device the backend computes on, in words (``NVIDIA H200``, ``CPU``)."""
  name = backends.name()
  if name == "jax":
    import jax
    device = jax.config.jax_default_device or jax.devices()[0]
    return "CPU" if device.platform == "cpu" else device.device_kind
  if name == "torch":
    import keras  # noqa: F401 (sets the default device)
    from keras.src.backend.torch import core
    import torch
    device = torch.device(core.get_device())
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()
  import tensorflow as tf
  gpus = tf.config.list_logical_devices("GPU")
  if not gpus:
    return "CPU"
  details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
  return details.get("device_name", gpus[0].name)


def free_memory():
  """Bytes free on the accelerator the backend computes on; None on a CPU (or where it cannot be asked:
  TensorFlow grows its GPU memory and does not tell the device's total)."""
  name = backends.name()
  if name == "jax":
    import jax
    device = jax.config.jax_default_device or jax.devices()[0]
    if device.platform == "cpu":
      return None
    stats = device.memory_stats() or {}
    if "bytes_limit" not in stats:
      return None
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  if name == "torch":
    import keras  # noqa: F401
    from keras.src.backend.torch import core
    import torch
    device = torch.device(core.get_device())
    if device.type != "cuda":
      return None
    free, _ = torch.cuda.mem_get_info(device)
    # Memory torch's caching allocator holds but does not use is free to this process as well.
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
  return None


def out_of_memory(error: Exception) -> bool:
  """The backend ran out of device (or host) memory: TensorFlow's ResourceExhaustedError, XLA's
  RESOURCE_EXHAUSTED (TensorFlow and JAX), torch's OutOfMemoryError."""
  text = str(error)
  if "RESOURCE_EXHAUSTED" in text or "CUDA out of memory" in text:
    return True
  if "tensorflow" in sys.modules:
    import tensorflow as tf
    if isinstance(error, tf.errors.ResourceExhaustedError):
      return True
  torch = sys.modules.get("torch")
  return torch is not None and isinstance(error, getattr(torch.cuda, "OutOfMemoryError", ()))
