"""One entry point for every artifact kind: :func:`synthesize`, with the generators it needs."""

from __future__ import annotations

import os

import torch

from .. import _random
from .._checks import InputError, check_image, check_not_empty
from .ddim import paper_t0

KINDS: tuple[str, ...] = ("vq-replace", "ar-resample", "ddim-gauss", "ddim-scale", "identity")
NEEDS: dict[str, tuple[str, ...]] = {"vq-replace": ("vq",), "ar-resample": ("vq", "transformer"),
                                     "ddim-gauss": ("ddpm",), "ddim-scale": ("ddpm",), "identity": ()}
_WHAT = {"vq": "a VQ autoencoder (VQAutoencoder .safetensors + .json, `genrestore train vq`)",
         "transformer": "a token transformer on that autoencoder's tokens (`genrestore train transformer`)",
         "ddpm": "an unconditional epsilon DDPM (DenoisingUNet, `genrestore train ddpm`)"}


# shipped generators used when no path is given (only those in the weight registry count)
DEFAULTS: dict[str, str] = {"vq": "vq-default", "transformer": "transformer-default", "ddpm": "ddpm-default"}


def generator_specs(kind: str, paths: dict[str, str | os.PathLike | None], flag: str = "") -> dict[str, str]:
    """``{key: file or weight name}`` for the generators ``kind`` needs: ``paths[key]``, else the
    shipped generator in :data:`DEFAULTS` when the registry has it.

    Raises:
        InputError: an unknown kind, or a needed generator with neither (named as ``flag + key``).
    """
    from .. import weights as ws

    if kind not in KINDS:
        raise InputError(f"unknown artifact kind {kind!r}; known: {', '.join(KINDS)}")
    specs = {}
    for key in NEEDS[kind]:
        spec = paths.get(key) or (DEFAULTS[key] if DEFAULTS.get(key) in ws.REGISTRY else None)
        if not spec:
            raise InputError(f"{kind} needs {flag}{key} MODEL: {_WHAT[key]}; no shipped default is registered, so "
                             "train one or pass your own")
        specs[key] = str(spec)
    return specs


def load_generators(kind: str, paths: dict[str, str | os.PathLike | None], device: str | torch.device = "cpu",
                    flag: str = "") -> dict[str, torch.nn.Module]:
    """The generators ``kind`` needs, loaded from :func:`generator_specs` (keys ``vq``,
    ``transformer``, ``ddpm``; each a ``.safetensors`` file or a weight name).

    Args:
        kind: one of :data:`KINDS`.
        paths: ``{key: file or weight name or None}``; a missing or ``None`` entry takes the
            shipped default of :data:`DEFAULTS` (``vq-default``, ``transformer-default``,
            ``ddpm-default``).
        device: where the networks go.
        flag: prefix naming a missing generator in the error (e.g. ``"--"`` for CLI options).

    Returns:
        ``{key: network}`` for the keys ``kind`` needs (``{}`` for ``identity``).

    Raises:
        InputError: an unknown kind, a needed generator with no path and no default, or a file
            that is missing or not such a model (:class:`~genrestore.weights.WeightNotFound`
            for an absent named weight).

    Example:
        >>> gens = load_generators("vq-replace", {})  # the shipped vq-default
        >>> {key: type(net).__name__ for key, net in gens.items()}
        {'vq': 'VQAutoencoder'}
        >>> load_generators("identity", {})
        {}
    """
    from .. import weights as ws
    from ..diffusion import DenoisingUNet
    from ..models.vq import TokenTransformer, VQAutoencoder

    loaders = {"vq": VQAutoencoder, "transformer": TokenTransformer, "ddpm": DenoisingUNet}
    return {key: loaders[key].load(ws.model_file(spec), device)
            for key, spec in generator_specs(kind, paths, flag).items()}


def ddim_t0(net, t0: int | None, what: str = "t0") -> int:
    """The DDIM kinds' stopping step for the DDPM ``net``: ``t0``, or with ``None`` DiffGAR's 840 of
    ``T = 1000`` scaled to the model's ``T``; :class:`InputError` when ``t0`` is past ``T - 1``
    (``what`` names it in the message, e.g. ``"--t0"``)."""
    num_t = net.config["schedule"]["num_train_timesteps"]
    if t0 is None:
        return paper_t0(net.config["schedule"])
    if not 0 <= t0 < num_t:
        raise InputError(f"{what} {t0} is past the DDPM's last timestep {num_t - 1} (it has {num_t} timesteps)")
    return t0


def synthesize(kind: str, generators: dict, x: torch.Tensor, level: float, generator: _random.Generator = None,
               temperature: float = 18.0, top_k: int | None = 500, region: str = "suffix", t0: int | None = None,
               ddim_steps: int = 48, alpha: float | None = None, gamma: float | None = None,
               beta: float | None = None) -> tuple[torch.Tensor, dict]:
    """The ``kind`` artifact of ``x`` ``(N, 3, H, W)`` in ``[0, 1]``: ``(artifact, exact parameters)``.

    Args:
        generators: from :func:`load_generators`.
        level: in ``[0, 1]`` (0.5: DiffGAR's settings).
        generator: a generator, or one per image.
        temperature, top_k, region: ``ar-resample`` settings.
        t0, ddim_steps: the DDIM kinds' stopping step and steps. ``t0=None`` is DiffGAR's 840 of
            ``T = 1000`` scaled to the model's ``T``: ``round(0.84 T)``.
        alpha, gamma, beta: the DDIM kinds' perturbation, instead of the level's (``None``: the
            level's); DiffGAR's test pairs use ``alpha=0.25`` and ``gamma=1.009, beta=0.005``.

    Returns:
        ``(artifact, parameters)``: the artifact images ``(N, 3, H, W)`` float in ``[0, 1]``, and
        a JSON-serialisable dict of the exact parameters drawn (``"kind"``, ``"level"``, ...).

    Raises:
        InputError: ``x`` not ``(N, 3, H, W)`` in ``[0, 1]``, a generator list not of ``N``, an
            unknown kind, a needed generator missing from ``generators``, or ``t0`` past the
            model's last timestep ``T - 1``.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> y, p = synthesize("identity", {}, x, level=0.5)
        >>> bool(torch.equal(y, x)), p
        (True, {'kind': 'identity'})
        >>> y, p = synthesize("vq-replace", load_generators("vq-replace", {}), x, 0.5,
        ...                   generator=torch.Generator().manual_seed(0))
        >>> y.shape, p["kind"], p["level"]
        (torch.Size([2, 3, 16, 16]), 'vq-replace', 0.5)
    """
    from . import ar_resample, ddim_gaussian, ddim_scale_shift, identity_pair, vq_replace

    check_image(x, "x", channels=(3,))  # the generators are RGB models
    _random.check_generator(generator, x.shape[0])  # also for the kinds that draw nothing (identity, ddim-scale)
    missing = [k for k in NEEDS.get(kind, ()) if k not in generators]
    if missing:
        raise InputError(f"the {kind} artifact needs the generators {list(NEEDS[kind])}; {missing} are not in "
                         f"generators (load_generators({kind!r}, ...) gives them)")
    if kind == "vq-replace":
        return vq_replace(generators["vq"], x, level, generator)
    if kind == "ar-resample":
        return ar_resample(generators["vq"], generators["transformer"], x, level, generator, temperature, top_k,
                           region)
    if kind in ("ddim-gauss", "ddim-scale"):
        check_not_empty(x, "image")  # the sampler cannot give an empty batch
        from ..diffusion.model import size_multiple
        from ..restore.idm import pad_to_multiple

        net = generators["ddpm"]
        padded, (h, w) = pad_to_multiple(x, size_multiple(net))
        schedule = net.config["schedule"]
        t0 = ddim_t0(net, t0)
        if kind == "ddim-gauss":
            y, p = ddim_gaussian(net, padded, level, generator, alpha, t0=t0, steps=ddim_steps, schedule=schedule)
        else:
            y, p = ddim_scale_shift(net, padded, level, gamma, beta, t0=t0, steps=ddim_steps, schedule=schedule)
        return y[..., :h, :w], p
    if kind == "identity":
        return identity_pair(x)
    raise InputError(f"unknown artifact kind {kind!r}; known: {', '.join(KINDS)}")
