"""Peak memory of whole-image SR inference against the estimate `genrestore upscale` checks.

For each SR model in the registry (random weights of its architecture, so no weight file is
needed), runs float32 inference on the CPU in a fresh process per input size and prints the rise
of the peak resident memory (``ru_maxrss``) over the process's peak before inference, beside
``genrestore.cli_sr._estimate_bytes`` (what ``upscale`` and ``detect`` check against the free
memory) and the live tensors it doubles (``genrestore.models.sr.peak_activation_bytes``). A
ratio above 1 means that number is low.

    python benchmarks/sr_memory.py --sizes 64 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
from genrestore import weights as ws
from genrestore.cli_sr import _estimate_bytes
from genrestore.models.sr import build_sr, peak_activation_bytes
name, side = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
net = build_sr(ws.REGISTRY[name].config).eval()
x = torch.rand(1, 3, side, side)
with torch.no_grad():
    net(torch.rand(1, 3, 8, 8))  # one-time allocations (thread pools, kernels) before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    y = net(x)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": after - before, "estimate": _estimate_bytes(net, (side, side)),
                  "tracked": peak_activation_bytes(net, (side, side)), "out": list(y.shape[-2:])}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="input sides, px")
    ap.add_argument("--models", nargs="+", help="registry names (default: every SR model)")
    args = ap.parse_args()
    from genrestore import weights as ws

    names = args.models or [n for n, w in ws.REGISTRY.items()
                            if isinstance(getattr(w, "config", None), dict) and "arch" in w.config
                            and not n.endswith("-netd")]
    print("| model | input px | output px | measured MiB | estimate MiB | measured / estimate | tracked MiB | measured / tracked |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for side in args.sizes:
            r = subprocess.run([sys.executable, "-c", CHILD, name, str(side)], capture_output=True, text=True)
            if r.returncode:
                print(f"| {name} | {side} | - | failed: {r.stderr.strip().splitlines()[-1]} | | |")
                continue
            d = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"| {name} | {side} | {d['out'][0]} | {d['peak'] / 2**20:.0f} | {d['estimate'] / 2**20:.0f} "
                  f"| {d['peak'] / d['estimate']:.2f} | {d['tracked'] / 2**20:.0f} | {d['peak'] / d['tracked']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
