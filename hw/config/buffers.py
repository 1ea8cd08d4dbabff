"""The config of the accelerator top's buffers."""

from dataclasses import dataclass

from .checks import check_int

__all__ = ["BufferConfig"]


@dataclass(frozen=True)
class BufferConfig:
    """The top's buffers (A, B, C, and X, Y, V as configured; :func:`hw.isa.buffer_specs`).

    Parameters
    ----------
    depth : int
        Words per buffer: a power of two from 2 to 65536. It bounds every run's shape (the
        words of A, B, C, X, Y and V a run reads or writes) and so how the host splits an
        operation into runs (:class:`boards.host.Client`); a board built from a config and the
        host driving it both read it here. A power of two because block RAM comes in
        power-of-two depths (a deeper buffer costs the next power's blocks anyway) and
        :func:`intformer.model.compiler.fit_depth` doubles it; at least 2 because RUN
        RESIDUAL holds its two operands in X (``2*words <= depth``).
    """

    depth: int = 256

    def __post_init__(self):
        check_int("Buffers depth", self.depth, lo=2, hi=1 << 16)
        if self.depth & (self.depth - 1):
            raise ValueError(f"Buffers depth must be a power of two, not {self.depth}")
