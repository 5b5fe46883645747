"""Forward operators ``y = A(x)``: classical degradations, benchmark tasks and their surrogates."""

from .jpeg import jpeg_pillow, jpeg_torch, quantization_tables, round_surrogate
from .kernels import (blur, gaussian_kernel, generalized_gaussian_kernel, pad_kernel, plateau_kernel,
                      random_mixed_kernels, sinc_kernel)
from .masks import random_box_mask, random_stroke_mask, sample_stroke_endpoints, stroke_mask
from .noise import (bernoulli_mask, clamp_surrogate, dead_pixels, gaussian_noise, poisson_noise,
                    poisson_noise_scaled)
from .pipelines import GFPGAN, IDM, PIPELINES, REALESRGAN_X4, BlurDownNoiseJpeg, SecondOrder
from .resize import FILTERS, resize, resize_8bit, resize_adjoint
from .tasks import (COMPOSITIONS, LEVELS, ORDER, TASKS, Composition, Deartifact, Denoise, Inpaint,
                    Upsample, get_task)

__all__ = [
    "jpeg_pillow", "jpeg_torch", "quantization_tables", "round_surrogate",
    "blur", "gaussian_kernel", "generalized_gaussian_kernel", "pad_kernel", "plateau_kernel",
    "random_mixed_kernels", "sinc_kernel",
    "random_box_mask", "random_stroke_mask", "sample_stroke_endpoints", "stroke_mask",
    "bernoulli_mask", "clamp_surrogate", "dead_pixels", "gaussian_noise", "poisson_noise",
    "poisson_noise_scaled",
    "GFPGAN", "IDM", "PIPELINES", "REALESRGAN_X4", "BlurDownNoiseJpeg", "SecondOrder",
    "FILTERS", "resize", "resize_8bit", "resize_adjoint",
    "COMPOSITIONS", "LEVELS", "ORDER", "TASKS", "Composition", "Deartifact", "Denoise", "Inpaint",
    "Upsample", "get_task",
]
