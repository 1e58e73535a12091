"""Whole-song separation: window planning on the model's grid, the forward-pass protocol, the `Separator`."""

from wave_unet_tf.separation.forward import ForwardPass, KerasForwardPass, as_forward_pass
from wave_unet_tf.separation.windows import WindowPlan, plan_windows
from wave_unet_tf.separation.separator import Separator

__all__ = ["ForwardPass", "KerasForwardPass", "as_forward_pass", "WindowPlan", "plan_windows", "Separator"]
