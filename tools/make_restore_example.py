"""Make ``genrestore/assets/astronaut_degraded.png``: the bundled input of the README's main command.

scikit-image's 512x512 astronaut (public domain), degraded once by the IDM pipeline with fixed,
moderate parameters (Gaussian blur sigma 2 px, x3 bilinear downsampling, Gaussian noise sigma 8/255,
JPEG quality 60, bilinear resize back). Rerun to reproduce the file bit for bit:

    python tools/make_restore_example.py
"""

from pathlib import Path

import torch

from genrestore.degrade.pipelines import BlurDownNoiseJpeg
from genrestore.io import write_image

OUT = Path(__file__).resolve().parents[1] / "genrestore" / "assets" / "astronaut_degraded.png"


def main() -> None:
    from skimage import data

    x = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    fixed = BlurDownNoiseJpeg(sigma_range=(2.0, 2.0), scale_range=(3.0, 3.0), noise_range_255=(8.0, 8.0),
                              jpeg_range=(60, 60))
    y = fixed.degrade(x, torch.Generator().manual_seed(0))
    write_image(OUT, y)
    print(f"{OUT} {tuple(y.shape)}")


if __name__ == "__main__":
    main()
