"""The ``intformer`` command line: generate, sim, synth, report, demo, prove, embed, compile."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from hw.config import BUILD_DIR_ENV, PRESETS, AccelConfig, build_dir
from hw.units import UNITS

__all__ = ["main"]


def _add_config_args(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=PRESETS, default=None,
                   help="a named preset (default: icebreaker; with --board, "
                        "that board's preset)")
    g.add_argument("--config", type=Path, help="a TOML config file")


def _load_config(args):
    if args.config is not None:
        return AccelConfig.from_toml(args.config)
    return AccelConfig.preset(args.preset or "icebreaker")


def cmd_generate(args):
    from .generate import write_outputs

    cfg = _load_config(args)
    out = args.out or build_dir() / cfg.name / "verilog"
    for path in write_outputs(cfg, Path(out), units=args.unit or None):
        print(f"wrote {path}")


def _sim_gemm(cfg, M, K, N, stall, seed, out=print, backend="amaranth"):
    from sim import cyclemodel, golden

    from . import simulate

    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, N), dtype=np.int8)
    t0 = time.monotonic()
    r = simulate.gemm(cfg, a, b, stall=stall, seed=seed, backend=backend)
    dt = time.monotonic() - t0
    exact = np.array_equal(r.output, golden.gemm(a, b))
    model = cyclemodel.gemm_cycles(cfg, M, K, N)
    out(f"GEMM {M}x{K}x{N} on {cfg.array.rows}x{cfg.array.cols} (stall {stall}, "
        f"{r.extra['backend']}): "
        f"{'bit-exact with golden' if exact else 'MISMATCH with golden'}")
    out(f"  cycles {r.cycles} (model {model}, no stalls), utilization {r.utilization:.1%}, "
        f"simulated at {r.cycles / dt:,.0f} cycles/s")
    return exact, r


def _sim_attention(cfg, heads, L, d, causal, stall, seed, out=print, backend="amaranth"):
    from sim import cyclemodel, golden

    from . import simulate

    rng = np.random.default_rng(seed)
    q, k, v = (rng.integers(-128, 128, (heads, L, d), dtype=np.int8) for _ in range(3))
    scales = (0.02, 0.02, 0.05, 0.05)
    t0 = time.monotonic()
    r = simulate.attention(cfg, q, k, v, *scales, causal=causal, stall=stall, seed=seed,
                           backend=backend)
    dt = time.monotonic() - t0
    exact = np.array_equal(r.output, golden.attention(q, k, v, *scales, causal=causal,
                                                      cfg=cfg)[0])
    model = cyclemodel.attention_cycles(cfg, L, d, causal, heads)
    out(f"attention H={heads} L={L} d={d}{' causal' if causal else ''} on "
        f"{cfg.array.rows}x{cfg.array.cols} (stall {stall}, {r.extra['backend']}): "
        f"{'bit-exact with golden' if exact else 'MISMATCH with golden'}")
    out(f"  cycles {r.cycles} (model {model}, no stalls), utilization {r.utilization:.1%}, "
        f"array busy {r.extra['array_busy']}, waiting for softmax "
        f"{r.extra['softmax_wait'] / r.cycles:.1%}, simulated in {dt:.1f} s")
    return exact, r


def _sim_rows(cfg, unit, rows, length, stall, seed, out=print, backend="amaranth"):
    """Softmax, GELU or LayerNorm on random rows, against the golden model."""
    from sim import golden

    from . import simulate

    rng = np.random.default_rng(seed)
    if unit == "softmax":
        w = cfg.softmax.in_width
        q = rng.integers(-(1 << (w - 2)), 1 << (w - 2), (rows, length))
        args = (q, 2.0 ** -(w - 6))
    elif unit == "gelu":
        w = cfg.gelu.in_width
        q = rng.integers(-(1 << (w - 1)), 1 << (w - 1), (rows, length))
        args = (q, 4.0 / ((1 << (w - 1)) - 1))
    else:
        w = cfg.layernorm.in_width
        q = rng.integers(-(1 << (w - 1)), 1 << (w - 1), (rows, length))
        args = (q, 0.01)
    unit_cfg = getattr(cfg, unit)
    t0 = time.monotonic()
    r = getattr(simulate, unit)(cfg, *args, stall=stall, seed=seed, backend=backend)
    dt = time.monotonic() - t0
    exact = np.array_equal(r.output, getattr(golden, unit)(*args, cfg=unit_cfg)[0])
    out(f"{unit} {rows} rows x {length} (lanes {unit_cfg.lanes}, stall {stall}, "
        f"{r.extra['backend']}): "
        f"{'bit-exact with golden' if exact else 'MISMATCH with golden'}; "
        f"{r.cycles} cycles, {rows * -(-length // unit_cfg.lanes) / r.cycles:.2f} beats/cycle, "
        f"simulated in {dt:.1f} s")
    return exact, r


def cmd_sim(args):
    cfg = _load_config(args)
    from sim.verilator.toolchain import VerilatorBuildError, VerilatorUnavailable

    try:
        if args.unit == "gemm":
            exact, _ = _sim_gemm(cfg, args.m, args.k, args.n, args.stall, args.seed,
                                 backend=args.backend)
        elif args.unit == "attention":
            exact, _ = _sim_attention(cfg, args.heads, args.length, args.head_dim, args.causal,
                                      args.stall, args.seed, backend=args.backend)
        else:
            exact, _ = _sim_rows(cfg, args.unit, args.rows, args.length, args.stall, args.seed,
                                 backend=args.backend)
    except (VerilatorUnavailable, VerilatorBuildError) as e:
        print(f"intformer sim: error: {e}", file=sys.stderr)
        return 2
    return 0 if exact else 1


def cmd_synth(args):
    from boards.seeds import parse_seeds

    # Checked before any tool runs.
    if args.no_floorplan:
        from boards.floorplan import DEVICE
        from boards.flow import BOARDS

        if not args.board or BOARDS[args.board].device != DEVICE:
            raise ValueError(f"--no-floorplan applies to a board build on the {DEVICE} "
                             f"(--board ulx3s), not to "
                             f"{'--board ' + args.board if args.board else 'a unit'}")
    if args.seeds is not None:
        seeds = parse_seeds(args.seeds)
    else:
        seeds = (1 if args.seed is None else args.seed,)
    if args.board and args.config is None and args.preset is None:
        args.preset = args.board          # a board builds its own preset unless told otherwise
    cfg = _load_config(args)
    if args.board:
        from boards.flow import synth_board

        report = synth_board(cfg, args.board, seeds=seeds, floorplan=not args.no_floorplan,
                             log=print)
        print(report.table())
        print(f"report: {Path(report.out_dir) / 'report.json'}")
        return 0 if report.timing_passed else 1
    from boards.synth import synth_unit

    report = synth_unit(cfg, args.unit, args.family, fmax=args.fmax, seeds=seeds)
    print(report.table())
    print(f"report: {report.log_dir / 'synth.json'}")


def cmd_report(args):
    paths = sorted(build_dir().glob("synth/*/*/synth.json"))
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
    t_start = time.monotonic()
    print(f"== intformer demo: {cfg}")
    print("== 1. generate Verilog")
    for path in write_outputs(cfg, build_dir() / cfg.name / "verilog"):
        print(f"  wrote {path}")
    print("== 2. simulate against the golden model")
    R, C = cfg.array.rows, cfg.array.cols
    verdicts, results = [], []
    for M, K, N, stall in [(4 * R, 128, 4 * C, 0.0), (3 * R + 1, 32, 2 * C + 1, 0.5)]:
        K = min(K, cfg.gemm.max_k)
        exact, r = _sim_gemm(cfg, M, K, N, stall, seed=M, out=lambda s: print("  " + s))
        verdicts.append(exact)
        if not stall:
            results.append((f"GEMM {M}x{K}x{N}", r))
    at = cfg.attention
    L, d = min(32, at.max_seq_len), min(16, at.max_head_dim)
    if not at.enabled:
        print(f"  (attention is left out of the {cfg.name} board build; simulated on the same "
              f"array all the same)")
    exact, r = _sim_attention(cfg, 1, L, d, False, 0.0, seed=1, out=lambda s: print("  " + s))
    verdicts.append(exact)
    results.append((f"attention L={L} d={d}", r))
    print("== 3. synthesize the GEMM unit out of context (iCE40)")
    print(synth_unit(cfg, "gemm", "ice40", log=lambda s: print("  " + s)).table())
    print(f"== 4. synthesize, place and route the {cfg.name} board top")
    from boards.flow import BOARDS, synth_board

    board = cfg.name if cfg.name in BOARDS else "icebreaker"
    report = synth_board(cfg, board, log=lambda s: print("  " + s))
    print(report.table())
    print("== 5. throughput at that clock")
    f = report.clk_mhz * 1e6
    peak = 2 * R * C * f / 1e9
    dsp = report.resources["dsp"]["count"]
    lut = report.resources["lut"]["count"]
    print(f"  clock {report.clk_mhz:g} MHz (Fmax {report.fmax:.1f} MHz): peak {peak:.3f} GOPS "
          f"(2 x {R}x{C} MACs x f), {peak / dsp:.4f} GOPS/DSP, {peak / lut * 1000:.3f} GOPS/kLUT")
    for label, r in results:
        print(f"  {label}: utilization {r.utilization:.1%} -> {peak * r.utilization:.3f} GOPS "
              f"achieved")
    ok = all(verdicts)
    print(f"== verdict: {'all simulations bit-exact with the golden model' if ok else 'MISMATCH'}"
          f" ({time.monotonic() - t_start:.0f} s)")
    return 0 if ok else 1


def cmd_prove(args):
    from formal.catalogue import select, table

    proofs = select(args.unit, slow=args.slow)
    outcomes = []
    for proof in proofs:
        outcome = proof.run()
        outcomes.append(outcome)
        print(f"  {proof.name}: {outcome.status} ({outcome.seconds:.1f} s)", flush=True)
    print(table(outcomes))
    failed = [o for o in outcomes if not o.passed]
    print(f"== {len(outcomes) - len(failed)} of {len(outcomes)} proofs pass")
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="intformer", description=__doc__)
    parser.add_argument("--build-dir", type=Path,
                        help=f"where generated output goes (default: ${BUILD_DIR_ENV}, else "
                             f"./build)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write Verilog of each unit and a JSON description")
    _add_config_args(p)
    p.add_argument("--out", type=Path, help="output directory (default build/<name>/verilog)")
    p.add_argument("--unit", action="append", choices=list(UNITS),
                   help="only this unit (repeatable; default: all)")
    p.set_defaults(func=cmd_generate)

    from .simulate import AUTO_CYCLES

    p = sub.add_parser("sim", help="simulate a unit on random data against the golden model")
    _add_config_args(p)
    p.add_argument("--unit", default="gemm",
                   choices=["gemm", "softmax", "gelu", "layernorm", "attention"])
    p.add_argument("-m", type=int, default=16, help="GEMM M")
    p.add_argument("-k", type=int, default=64, help="GEMM K")
    p.add_argument("-n", type=int, default=16, help="GEMM N")
    p.add_argument("--rows", type=int, default=4, help="rows (softmax, GELU, LayerNorm)")
    p.add_argument("--length", type=int, default=32,
                   help="row length (softmax, GELU, LayerNorm) or sequence length (attention)")
    p.add_argument("--head-dim", type=int, default=16, help="attention head dimension")
    p.add_argument("--heads", type=int, default=1, help="attention heads")
    p.add_argument("--causal", action="store_true", help="attention causal mask")
    p.add_argument("--stall", type=float, default=0.0,
                   help="probability that a testbench stream stalls on a cycle")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=["amaranth", "verilator", "auto"],
                   help=f"simulator: Amaranth's, Verilator (builds the unit's model once, "
                        f"cached under build/verilator/), or auto: Verilator for runs the "
                        f"cycle model puts at {AUTO_CYCLES:,} cycles or more when it can "
                        f"build, else Amaranth (default); the report names the one that ran")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("synth", help="synthesize one unit out of context with Yosys, or a whole "
                                     "board top through place-and-route to a bitstream")
    _add_config_args(p)
    p.add_argument("--board", choices=["icebreaker", "ulx3s"],
                   help="build the board top (accelerator + UART link + LEDs) to a bitstream "
                        "under build/<board>/ instead of one unit")
    p.add_argument("--unit", default="gemm", choices=list(UNITS))
    p.add_argument("--family", default="ice40", choices=["ice40", "ecp5"])
    p.add_argument("--fmax", action="store_true",
                   help="also place and route out of context (ECP5 only) for Fmax")
    p.add_argument("--no-floorplan", action="store_true",
                   help="with --board ulx3s: leave the array's DSPs to nextpnr's placer instead "
                        "of pinning them in bands of DSP sites (boards/floorplan.py)")
    g = p.add_mutually_exclusive_group()
    # No default here: argparse takes an option given at its default for one left out, so a
    # default of 1 would let `--seed 1 --seeds 1,2` through.
    g.add_argument("--seed", type=int, help="nextpnr seed (default 1)")
    g.add_argument("--seeds", metavar="N,N,...",
                   help="nextpnr at each of these seeds (e.g. 1,2,3), side by side on the "
                        "same netlist (a board, or a unit with --fmax); the report gives each "
                        "seed's Fmax and slack and the worst seed's; a board's bitstream is the "
                        "first seed's")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("report", help="tabulate the synthesis reports under build/")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="generate, simulate against golden, synthesize, report")
    _add_config_args(p)
    p.set_defaults(func=cmd_demo)

    from formal.catalogue import UNITS as PROOF_UNITS

    p = sub.add_parser("prove", help="prove the stream rules of the stream kit and the units' "
                                     "ports with SymbiYosys, and print a table")
    p.add_argument("--unit", choices=list(PROOF_UNITS), help="only this unit's proofs")
    p.add_argument("--slow", action="store_true", help="also the slow (deeper) proofs")
    p.set_defaults(func=cmd_prove)

    from .model.cli import add_commands
    add_commands(sub, _add_config_args)          # embed, compile (intformer/model/cli.py)

    from .simboard import add_parser as add_sim_board

    add_sim_board(sub, _add_config_args, _load_config)

    args = parser.parse_args(argv)
    if args.build_dir is not None:
        os.environ[BUILD_DIR_ENV] = str(args.build_dir.resolve())
    try:
        return args.func(args) or 0
    except (ValueError, TypeError) as e:
        print(f"intformer {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
