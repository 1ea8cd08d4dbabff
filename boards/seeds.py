"""nextpnr placer seeds: checked seed lists, each seed's folder, and the slack of an Fmax."""

import re
import shutil
from pathlib import Path

__all__ = ["slack_ns", "clear_seed_dirs", "seed_dir", "check_seeds", "parse_seeds"]


def slack_ns(clk_mhz, fmax_mhz):
    """Timing slack in ns at a clock of ``clk_mhz``: its period less the critical path that an
    Fmax of ``fmax_mhz`` implies, ``1000/clk_mhz - 1000/fmax_mhz`` (negative: the clock is
    missed)."""
    return 1000 / clk_mhz - 1000 / fmax_mhz


def clear_seed_dirs(out_dir):
    """Delete the ``seed-<n>/`` folders of an earlier build in ``out_dir``."""
    for stale in Path(out_dir).glob("seed-*"):
        if stale.is_dir() and re.fullmatch(r"seed--?\d+", stale.name):
            shutil.rmtree(stale)


def seed_dir(seed):
    """The folder, below a build's output folder, of its placement at ``seed``."""
    return f"seed-{seed}"


def check_seeds(seeds):
    """``seeds`` as a tuple, checked: one or more distinct integers (nextpnr placer seeds)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"Seeds must be a sequence of integers, not {seeds!r}")
    seeds = tuple(seeds)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Seed must be an integer, not {seed!r}")
    if not seeds:
        raise ValueError("Seeds must name at least one seed, not ()")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"Seeds must be distinct, not {', '.join(map(str, seeds))} "
                         f"({', '.join(map(str, repeated))} more than once)")
    return seeds


def parse_seeds(text):
    """Seeds from a comma-separated list such as ``"1,2,3"`` (as :func:`check_seeds`)."""
    parts = [part.strip() for part in text.split(",")]
    if parts == [""]:
        raise ValueError(f"Seeds must name at least one seed, not {text!r}")
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"Seeds must be comma-separated integers such as 1,2,3, "
                         f"not {text!r}") from None
    return check_seeds(seeds)
