"""The ``intformer`` command line: generate, sim, synth, report, demo."""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hw.config import PRESETS, AccelConfig
from hw.units import UNITS

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


def _add_config_args(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=PRESETS, default=None,
                   help="a named preset from configs/ (default: icebreaker)")
    g.add_argument("--config", type=Path, help="a TOML config file")


def _load_config(args):
    if args.config is not None:
        return AccelConfig.from_toml(args.config)
    return AccelConfig.preset(args.preset or "icebreaker")


def cmd_generate(args):
    from .generate import write_outputs

    cfg = _load_config(args)
    out = args.out or BUILD / cfg.name / "verilog"
    for path in write_outputs(cfg, Path(out), units=args.unit or None):
        print(f"wrote {path}")


def _sim_gemm(cfg, M, K, N, stall, seed, out=print):
    from sim import cyclemodel, golden

    from . import simulate

    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    t0 = time.monotonic()
    r = simulate.gemm(cfg, a, b, stall=stall, seed=seed)
    dt = time.monotonic() - t0
    exact = np.array_equal(r.output, golden.gemm(a, b))
    model = cyclemodel.gemm_cycles(cfg, M, K, N)
    out(f"GEMM {M}x{K}x{N} on {cfg.array.rows}x{cfg.array.cols} (stall {stall}): "
        f"{'bit-exact with golden' if exact else 'MISMATCH with golden'}")
    out(f"  cycles {r.cycles} (model {model}, no stalls), utilization {r.utilization:.1%}, "
        f"simulated at {r.cycles / dt:,.0f} cycles/s")
    return exact, r


def cmd_sim(args):
    cfg = _load_config(args)
    if args.unit != "gemm":
        raise SystemExit(f"intformer sim: unit must be gemm for now, not {args.unit!r}")
    exact, _ = _sim_gemm(cfg, args.m, args.k, args.n, args.stall, args.seed)
    return 0 if exact else 1


def cmd_synth(args):
    from boards.synth import synth_unit

    cfg = _load_config(args)
    report = synth_unit(cfg, args.unit, args.family, fmax=args.fmax, seed=args.seed)
    print(report.table())
    print(f"report: {report.log_dir / 'synth.json'}")


def cmd_report(args):
    paths = sorted(BUILD.glob("synth/*/*/synth.json"))
    if not paths:
        print("no synthesis reports under build/synth/ yet: run `intformer synth` first")
        return 1
    print(f"{'config':<12} {'unit':<10} {'family':<6} {'LUT':>7} {'FF':>7} {'carry':>6} "
          f"{'DSP':>4} {'BRAM':>5} {'Fmax MHz':>9}")
    for path in paths:
        r = json.loads(path.read_text())
        fmax = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else "-"
        print(f"{path.parent.parent.name:<12} {r['unit']:<10} {r['family']:<6} {r['lut']:>7} "
              f"{r['ff']:>7} {r['carry']:>6} {r['dsp']:>4} {r['bram']:>5} {fmax:>9}")
    return 0


def cmd_demo(args):
    from boards.synth import synth_unit

    from .generate import write_outputs

    cfg = _load_config(args)
    print(f"== intformer demo: {cfg}")
    print("== 1. generate Verilog")
    for path in write_outputs(cfg, BUILD / cfg.name / "verilog"):
        print(f"  wrote {path.relative_to(ROOT)}")
    print("== 2. simulate against the golden model")
    ok = True
    R, C = cfg.array.rows, cfg.array.cols
    for M, K, N, stall in [(2 * R + 1, 64, 2 * C + 1, 0.0), (3 * R, 32, 2 * C, 0.5)]:
        exact, _ = _sim_gemm(cfg, M, min(K, cfg.gemm.max_k), N, stall, seed=M,
                             out=lambda s: print("  " + s))
        ok &= exact
    print("== 3. synthesize the GEMM unit (out of context)")
    for family in ("ice40", "ecp5"):
        report = synth_unit(cfg, "gemm", family, log=lambda s: print("  " + s))
        print(report.table())
    print("== verdict:", "all simulations bit-exact" if ok else "MISMATCH")
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="intformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write Verilog of each unit and a JSON description")
    _add_config_args(p)
    p.add_argument("--out", type=Path, help="output directory (default build/<name>/verilog)")
    p.add_argument("--unit", action="append", choices=list(UNITS),
                   help="only this unit (repeatable; default: all)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("sim", help="simulate a unit on random data against the golden model")
    _add_config_args(p)
    p.add_argument("--unit", default="gemm", choices=["gemm"])
    p.add_argument("-m", type=int, default=16)
    p.add_argument("-k", type=int, default=64)
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--stall", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("synth", help="synthesize one unit out of context with Yosys")
    _add_config_args(p)
    p.add_argument("--unit", default="gemm", choices=list(UNITS))
    p.add_argument("--family", default="ice40", choices=["ice40", "ecp5"])
    p.add_argument("--fmax", action="store_true",
                   help="also place and route out of context (ECP5 only) for Fmax")
    p.add_argument("--seed", type=int, default=1, help="nextpnr seed")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("report", help="tabulate the synthesis reports under build/")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="generate, simulate against golden, synthesize, report")
    _add_config_args(p)
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, TypeError) as e:
        print(f"intformer {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
