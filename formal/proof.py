"""A proof: one set of properties on one component, its mode and depth, and how to run it."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .runner import Result, run_sby

__all__ = ["Proof", "Outcome"]


def _identity(dut):
    return dut


@dataclass(frozen=True)
class Outcome:
    """The verdict of a proof: its properties' task and, when it has one, its cover task."""

    proof: "Proof"
    check: Result
    cover: Result | None

    @property
    def passed(self):
        return self.check.passed and (self.cover is None or self.cover.passed)

    @property
    def status(self):
        if self.cover is not None and self.check.passed and not self.cover.passed:
            return f"COVER {self.cover.status}"
        return self.check.status

    @property
    def seconds(self):
        return self.check.seconds + (self.cover.seconds if self.cover else 0.0)

    @property
    def failed(self):
        """The messages of the failed assertions, or of the covers not reached."""
        if not self.check.passed:
            return self.check.failed
        return self.cover.failed if self.cover is not None else ()

    @property
    def trace(self):
        """The counterexample VCD of a failed proof (or the cover task's trace)."""
        if not self.check.passed:
            return self.check.trace
        return self.cover.trace if self.cover is not None and not self.cover.passed else None


@dataclass(frozen=True)
class Proof:
    """One proof of the catalogue.

    Parameters
    ----------
    name : str
        ``<unit>.<property>``, also the folder under ``build/formal/``.
    unit : str
        The component proved, as ``intformer prove --unit`` names it.
    mode : str
        ``"prove"`` (unbounded, k-induction of ``depth`` steps) or ``"bmc"`` (bounded to
        ``depth`` cycles from reset).
    depth : int
    build : callable
        ``build(wrap)`` returns the :class:`~formal.spec.Spec`; ``wrap(dut)`` returns the
        component to prove (the identity, or a broken variant in the mutation tests).
    cover_depth : int or None
        The depth of the cover task (each :class:`~amaranth.hdl.Cover` reached, so the
        properties are not vacuous); ``None`` for no cover task.
    cover_skip : int
        Steps of the cover task not searched (SymbiYosys' ``skip``): for a cover known to need
        that many steps, the searches of the shorter traces (which grow with the depth and find
        nothing) are left out.
    slow : bool
        Left out of ``make test`` and of ``intformer prove`` without ``--slow``.
    what : str
        One line on what is proved.
    """

    name: str
    unit: str
    mode: str
    depth: int
    build: Callable = field(repr=False)
    cover_depth: int | None = None
    cover_skip: int = 0
    slow: bool = False
    what: str = ""

    def run(self, wrap=_identity, *, cover=True, timeout=None, suffix=""):
        """Run the proof (on ``wrap(dut)``) and, with ``cover``, its cover task."""
        start = time.monotonic()
        rtlil = self.build(wrap).rtlil()
        elaborated = time.monotonic() - start
        check = run_sby(self.name + suffix, rtlil, mode=self.mode, depth=self.depth,
                        timeout=timeout)
        check = _plus(check, elaborated)
        cov = None
        if cover and self.cover_depth is not None and check.passed:
            cov = run_sby(self.name + suffix + ".cover", rtlil, mode="cover",
                          depth=self.cover_depth, skip=self.cover_skip, timeout=timeout)
        return Outcome(self, check, cov)


def _plus(result, seconds):
    return Result(result.name, result.mode, result.depth, result.status,
                  result.seconds + seconds, result.trace, result.log, result.failed)
