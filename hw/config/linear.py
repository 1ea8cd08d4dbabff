"""The config of ``RUN LINEAR``."""

from dataclasses import dataclass

from .checks import check_bool

__all__ = ["LinearConfig"]


@dataclass(frozen=True)
class LinearConfig:
    """``RUN LINEAR``: the GEMM with a per-channel bias and per-channel requantization, whose
    constants come from the CHAN buffer (:mod:`hw.isa`).

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the op (the CHAN buffer, a per-lane requantizer).
    """

    enabled: bool = True

    def __post_init__(self):
        check_bool("Linear enabled", self.enabled)
