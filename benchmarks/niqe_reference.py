"""NIQE against BasicSR's NumPy implementation and the standard MATLAB pristine parameters.

BasicSR (Apache-2.0) ships ``niqe_pris_params.npz`` (the parameters of the original MATLAB
NIQE) and a NumPy port of NIQE. This script loads BasicSR's modules straight from its source
(its package ``__init__`` needs torchvision, which is not installed here) and prints, per
photo: BasicSR's NIQE with the standard parameters, ours with the same parameters, and ours
with the pristine model genrestore ships.

    pip download --no-deps basicsr==1.4.2 -d /tmp/bsr && tar xzf /tmp/bsr/basicsr-1.4.2.tar.gz -C /tmp/bsr
    python benchmarks/niqe_reference.py /tmp/bsr/basicsr-1.4.2 [PHOTOS...]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import scipy.ndimage

from genrestore.io import list_images, read_image
from genrestore.metrics.niqe import niqe

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val"


def load_basicsr_niqe(src: Path):
    """BasicSR's ``calculate_niqe`` and the path of its standard pristine parameters."""
    root = src / "basicsr"
    sys.modules.setdefault("scipy.ndimage.filters", scipy.ndimage)  # removed from recent SciPy

    def load(name: str, path: Path):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    for pkg in ("basicsr", "basicsr.utils", "basicsr.metrics"):
        sys.modules[pkg] = types.ModuleType(pkg)
    registry = types.ModuleType("basicsr.utils.registry")
    registry.METRIC_REGISTRY = types.SimpleNamespace(register=lambda: (lambda f: f))
    sys.modules["basicsr.utils.registry"] = registry
    sys.modules["basicsr.utils"].bgr2ycbcr = load("basicsr.utils.color_util", root / "utils" / "color_util.py").bgr2ycbcr
    load("basicsr.utils.matlab_functions", root / "utils" / "matlab_functions.py")
    load("basicsr.metrics.metric_util", root / "metrics" / "metric_util.py")
    module = load("basicsr.metrics.niqe", root / "metrics" / "niqe.py")
    return module.calculate_niqe, root / "metrics" / "niqe_pris_params.npz"


def compare(src: Path, photos: list[Path]) -> np.ndarray:
    calculate_niqe, standard = load_basicsr_niqe(src)
    rows = []
    for p in photos:
        x = read_image(p, "rgb")
        bgr = (x[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.float64)
        rows.append((calculate_niqe(bgr, crop_border=0, input_order="HWC", convert_to="y"),
                     niqe(x, standard).item(), niqe(x).item()))
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("basicsr_src", type=Path, help="extracted basicsr-1.4.2 source folder")
    parser.add_argument("photos", nargs="*", default=[str(DEFAULT_PHOTOS)])
    args = parser.parse_args()
    photos = list_images(args.photos)
    rows = compare(args.basicsr_src, photos)
    print("| photo | BasicSR, standard params | ours, standard params | ours, shipped model |")
    print("|---|---|---|---|")
    for p, (a, b, c) in zip(photos, rows):
        print(f"| {p.name} | {a:.4f} | {b:.4f} | {c:.4f} |")
    print(f"| mean | {rows[:, 0].mean():.4f} | {rows[:, 1].mean():.4f} | {rows[:, 2].mean():.4f} |")
    print(f"\nmax |ours - BasicSR| (standard params): {np.abs(rows[:, 0] - rows[:, 1]).max():.4f}; "
          f"Pearson r of standard vs shipped model: {np.corrcoef(rows[:, 1], rows[:, 2])[0, 1]:.3f}")


if __name__ == "__main__":
    main()
