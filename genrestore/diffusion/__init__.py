"""Diffusion core for conditional restorers (IDM, DiffGAR), built on diffusers.

* :mod:`.schedulers`: diffusers DDPM / DDIM / inverse-DDIM schedulers from a stored noise schedule;
* :mod:`.model`: :class:`ConditionalUNet`, a ``UNet2DModel`` on ``concat(x_t, y)`` with optional
  class labels and a ``[MASK]`` class, saved as safetensors + JSON;
* :mod:`.sampling`: classifier-free guidance, DDPM/DDIM sampling, DDIM inversion and decoding,
  eps / x0 / v training targets and loss.

diffusers is imported only when a model or scheduler is built (``pip install 'diffusers>=0.30'``).
"""

from .model import ConditionalUNet, DenoisingUNet
from .sampling import (
    ddim_decode,
    ddim_invert,
    from_model_range,
    mask_class_labels,
    predict,
    sample,
    to_model_range,
    training_loss,
    training_target,
)
from .schedulers import DEFAULT_SCHEDULE, make_scheduler

__all__ = [
    "ConditionalUNet", "DEFAULT_SCHEDULE", "DenoisingUNet", "ddim_decode", "ddim_invert", "from_model_range", "make_scheduler",
    "mask_class_labels", "predict", "sample", "to_model_range", "training_loss", "training_target",
]
