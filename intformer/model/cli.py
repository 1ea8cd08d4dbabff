"""The model commands of the ``intformer`` CLI: ``embed`` and ``compile``."""

import sys
import time
from pathlib import Path

import numpy as np

from boards import icebreaker, ulx3s
from hw.config import AccelConfig

__all__ = ["add_commands", "Progress"]


class Progress:
    """A one-line progress report on stderr: ``progress(done, total, name=None)``, ``name``
    what was just done (an op: its kind and output)."""

    def __init__(self, what, stream=None):
        self.what, self.stream, self.t0 = what, stream or sys.stderr, time.monotonic()

    def __call__(self, done, total, name=None):
        end = "\n" if done == total else "\r"
        name = f" {name:<40}" if name else ""
        self.stream.write(f"{self.what}: {done}/{total}{name} ({time.monotonic() - self.t0:.1f} "
                          f"s){end}")
        self.stream.flush()


def _config(args):
    if args.config is not None:
        return AccelConfig.from_toml(args.config), args.fit
    if args.preset is not None:
        return AccelConfig.preset(args.preset), args.fit
    return AccelConfig.preset("ulx3s"), True      # the default preset, fitted to the model


def _model(args):
    from . import load
    from .program import Program
    from .sentences import CALIBRATION

    m = load(args.model)
    if args.program is not None:
        m.program = Program.load(args.program)
        return m
    texts = CALIBRATION
    if args.calibration is not None:
        texts = [t for t in Path(args.calibration).read_text().splitlines() if t.strip()]
    m.quantize(texts, progress=Progress(f"quantizing on {len(texts)} calibration texts"))
    return m


def cmd_compile(args):
    m = _model(args)
    cfg, fit = _config(args)
    c = m.compile(cfg, fit=fit, seq_len=args.seq_len, batch=args.batch)
    if args.clock_mhz is not None:
        c.clock = args.clock_mhz * 1e6
    print(c)
    if c.cfg is not cfg:
        print(f"config {cfg.name!r} raised to fit the model: see intformer.model.fit_config")
    if c.depth != cfg.buffers.depth:
        print(f"buffers.depth raised from {cfg.buffers.depth} to {c.depth} words to fit the "
              f"model: see intformer.model.fit_depth")
    if args.save is not None:
        m.program.save(args.save)
        print(f"wrote {args.save}")
    if args.save_config is not None:
        c.cfg.to_toml(args.save_config)
        print(f"wrote {args.save_config} (the {c.cfg.name} config, buffers.depth = {c.depth}: "
              f"build a board or `intformer sim-board --config` from it)")


def cmd_embed(args):
    m = _model(args)
    cfg, fit = _config(args)
    ids = m.tokenize(args.text)
    longest = max(len(x) for x in ids)
    c = m.compile(cfg, fit=fit, seq_len=longest)
    target = args.target
    if target != "golden":
        print(f"{target}: {c.cfg.name}, buffers of {c.depth} words"
              + (f" (config {cfg.name!r} raised to fit the model: intformer.model.fit_config)"
                 if c.cfg is not cfg else "")
              + (f" (buffers.depth raised from {cfg.buffers.depth} to {c.depth} to fit the "
                 f"model: intformer.model.fit_depth)" if c.depth != cfg.buffers.depth else ""),
              flush=True)
    progress = None
    if target != "golden":
        progress = Progress(f"{target} forward")
    elif len(args.text) > 8:
        progress = Progress("golden forward")
    from .accel import MismatchError

    try:
        emb = m.run(args.text, target, progress=progress, port=args.port,
                    log=lambda s: print(s, file=sys.stderr, flush=True))
    except MismatchError as e:
        print(f"intformer embed: error: {e}", file=sys.stderr)
        return 1
    ref = m.reference(args.text)
    print(f"{m!r} on {m.compiled.cfg.name}" + (f", {target}: every tensor equal to golden"
                                                if target != "golden" else ""))
    for text, x, e, r in zip(args.text, ids, emb, ref, strict=True):
        cycles = m.compile(cfg, fit=fit, seq_len=len(x)).cycles
        head = " ".join(f"{v:+.4f}" for v in e[:4])
        print(f"{text[:48]!r:<50} {len(x):4d} tokens  [{head} ...]  cosine to float "
              f"{float(e @ r):.5f}  {cycles:,d} cycles")
    if len(args.text) > 1:
        sim = emb @ emb.T
        print(f"pairwise cosine (integer): {np.round(sim[np.triu_indices(len(sim), 1)], 4)}")
    for text, run in zip(args.text, m.executions, strict=False):
        if args.clock_mhz is not None:
            run.compiled.clock = args.clock_mhz * 1e6
        print(f"\n{text[:48]!r}: {run}")


def add_commands(sub, add_config_args):
    """Register ``embed`` and ``compile`` on the CLI's subparsers."""
    for name, func, help_ in (
            ("embed", cmd_embed, "embed texts with a quantized model on the golden models, "
                                 "the RTL or a board: summary, cosine to the float reference, "
                                 "cycles measured and modelled"),
            ("compile", cmd_compile, "quantize a model and print its integer program with each "
                                     "op's RUNs, modelled cycles and latency, and link bytes "
                                     "and time on a config")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--model", default="all-MiniLM-L6-v2",
                       help="a Hugging Face folder or a packaged name (default all-MiniLM-L6-v2)")
        add_config_args(p)
        p.add_argument("--fit", action="store_true",
                       help="raise the config's limits to fit the model instead of refusing "
                            "(implied when no --preset/--config is given: ulx3s, fitted)")
        p.add_argument("--calibration", type=Path,
                       help="calibration texts, one per line (default: the built-in set)")
        p.add_argument("--program", type=Path, help="a saved program (.npz) instead of "
                                                    "quantizing")
        p.add_argument("--clock-mhz", type=float,
                       help="clock for the latencies and GOPS (default: the preset's board's "
                            f"clock, boards/<board>.py CLK_FREQ: ulx3s {ulx3s.CLK_FREQ / 1e6:g}, "
                            f"icebreaker {icebreaker.CLK_FREQ / 1e6:g})")
        if name == "embed":
            p.add_argument("--target", choices=("golden", "sim", "board"), default="golden",
                           help="golden (the NumPy models), sim (the RTL top on Verilator) or "
                                "board (a board on --port, built with the fitted config, its "
                                "buffers.depth included); sim and board check every tensor "
                                "against golden")
            p.add_argument("--port", help="the board's serial port (--target board; "
                                          "`intformer sim-board` prints one)")
            p.add_argument("text", nargs="+", help="texts to embed")
        else:
            p.add_argument("--seq-len", type=int, default=128,
                           help="sequence length to plan for (default 128)")
            p.add_argument("--batch", type=int, default=1,
                           help="sequences a forward runs at once (default 1): a Linear's "
                                "weights go once a block of their rows")
            p.add_argument("--save", type=Path, help="write the program to this .npz")
            p.add_argument("--save-config", type=Path,
                           help="write the compiled (with --fit, fitted) config to this TOML, "
                                "its [buffers] depth included")
        p.set_defaults(func=func)

