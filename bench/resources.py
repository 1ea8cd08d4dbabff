"""Per-unit resources from out-of-context Yosys synthesis, for both families and both variants.

Run: ``python bench/resources.py`` (``--fmax`` adds ECP5 out-of-context place-and-route;
``--only TEXT`` keeps the rows whose label contains TEXT).
Units use lanes = 1 and the default configs, except where a column says otherwise.
"""

import argparse
import dataclasses
import time

from boards.synth import synth_unit
from hw.config import AccelConfig, ArrayConfig, GemmConfig, RequantConfig

ROWS = [
    # (label, unit, config)
    ("GEMM 2x4, max K 256", "gemm",
     AccelConfig(name="gemm2x4", array=ArrayConfig(2, 4), gemm=GemmConfig(64, 256, 64))),
    ("GEMM 8x8, max K 512", "gemm",
     AccelConfig(name="gemm8x8", array=ArrayConfig(8, 8), gemm=GemmConfig(256, 512, 256))),
    ("requantizer, 4 lanes", "requant", AccelConfig(name="rq4", array=ArrayConfig(4, 4))),
    ("requantizer 4 lanes, half_rate", "requant",
     AccelConfig(name="rq4h", array=ArrayConfig(4, 4), requant=RequantConfig(half_rate=True))),
]
for variant in ("ibert", "shift"):
    base = AccelConfig()
    ROWS += [
        (f"softmax {variant}", "softmax",
         base.replace(softmax=dataclasses.replace(base.softmax, variant=variant))),
        (f"GELU {variant}", "gelu",
         base.replace(gelu=dataclasses.replace(base.gelu, variant=variant))),
    ]
ROWS += [
    ("LayerNorm", "layernorm", AccelConfig()),
    ("attention 4x4, L<=64, d<=32", "attention",
     AccelConfig(name="attn4x4", array=ArrayConfig(4, 4))),
]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--fmax", action="store_true")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="only the rows whose label contains TEXT (repeatable)")
    args = p.parse_args()
    print(f"{'unit':<30} {'family':<6} {'LUT':>6} {'FF':>6} {'carry':>6} {'DSP':>4} "
          f"{'BRAM':>5} {'LUTRAM':>6} {'Fmax':>7}  time")
    for label, unit, cfg in ROWS:
        if args.only and not any(text in label for text in args.only):
            continue
        for family in ("ice40", "ecp5"):
            t0 = time.monotonic()
            r = synth_unit(cfg, unit, family, fmax=args.fmax and family == "ecp5",
                           log=lambda s: None)
            fmax = f"{r.fmax_mhz:.1f}" if r.fmax_mhz else "-"
            print(f"{label:<30} {family:<6} {r.lut:>6} {r.ff:>6} {r.carry:>6} {r.dsp:>4} "
                  f"{r.bram:>5} {r.lutram:>6} {fmax:>7}  {time.monotonic() - t0:.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
