"""Ship a model trained by genrestore: copy it as float16 into genrestore/weights/ and register it.

    python tools/ship_weight.py runs/inpaint-gan/model.safetensors inpaint-gan \
        --description "..." [--data ../shared/data/photos/train]

Writes ``genrestore/weights/NAME.safetensors`` (floating tensors as float16) and ``NAME.json``
(the training sidecar: config, recipe, wall time, quality; plus the registry entry and the
training photos' names), and adds the entry to ``registry.json``. A developer tool, not part of
the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "genrestore" / "weights"
LICENSE = ("weights trained by genrestore (its own code and recipe) on the project's training photographs, which "
           "are CC0-1.0, CC-BY-4.0, CC-BY-SA-4.0 and GPL-2+ (authors and licenses in LICENSE.training-photos.md "
           "beside this file; file names in this sidecar); redistribute with that attribution")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a trained model .safetensors with its .json")
    ap.add_argument("name")
    ap.add_argument("--description", required=True)
    ap.add_argument("--data", help="the training photos folder (their names go in the sidecar)")
    ap.add_argument("--how-to-get", help="the retraining instructions, when the model's recipe alone does not "
                    "reproduce it (e.g. a fine-tune whose --init names a weight that this one replaces)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from genrestore.weights import sha256_file

    src = Path(args.model)
    meta = json.loads(src.with_suffix(".json").read_text())
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(src)).items()}
    out = WEIGHTS / f"{args.name}.safetensors"
    save_file(state, str(out))
    entry = {"file": out.name, "description": args.description, "license": LICENSE,
             "how_to_get": "shipped with genrestore; to retrain: "
                           + (args.how_to_get or meta.get("recipe", "(see the sidecar)")),
             "format": "safetensors", "sha256": sha256_file(out)}
    photos = sorted(p.name for p in Path(args.data).iterdir()) if args.data else []
    sidecar = {"name": args.name, **entry, **meta, "parameters": sum(v.numel() for v in state.values()),
               "training_photos": photos, "stored_dtype": "float16"}
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    registry = json.loads((WEIGHTS / "registry.json").read_text())
    registry[args.name] = entry
    (WEIGHTS / "registry.json").write_text(json.dumps(registry, indent=2) + "\n")
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {entry['sha256'][:12]}...) registered as {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
