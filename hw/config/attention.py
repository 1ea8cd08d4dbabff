"""The attention controller's config."""

from dataclasses import dataclass

from .checks import check_bool, check_int

__all__ = ["AttentionConfig"]


@dataclass(frozen=True)
class AttentionConfig:
    """Tiled attention controller: softmax(Q K^T / sqrt(d)) V, one head per command.

    Parameters
    ----------
    enabled : bool
        Whether the accelerator includes the controller.
    max_seq_len : int
        Longest sequence L; the score buffer holds full rows of this length.
    max_head_dim : int
        Largest head dimension d.
    softmax_lanes : int or "auto"
        Lanes of the controller's own softmax unit; must divide the array's columns. ``"auto"``,
        the default, scales them with the array (:attr:`AccelConfig.attention_lanes`), so that
        the softmax keeps up with a larger array; an integer pins them (1 lets attention share
        ``RUN SOFTMAX``'s unit, :attr:`AccelConfig.shared_softmax`).
    """

    enabled: bool = True
    max_seq_len: int = 64
    max_head_dim: int = 32
    softmax_lanes: int | str = "auto"

    def __post_init__(self):
        check_bool("Attention enabled", self.enabled)
        check_int("Attention max_seq_len", self.max_seq_len, lo=1, hi=1024)
        check_int("Attention max_head_dim", self.max_head_dim, lo=1, hi=256)
        if isinstance(self.softmax_lanes, str) and self.softmax_lanes != "auto":
            raise ValueError(f"Attention softmax_lanes must be an integer from 1 to 16 or "
                             f"\"auto\", not {self.softmax_lanes!r}")
        if self.softmax_lanes != "auto":
            check_int("Attention softmax_lanes", self.softmax_lanes, lo=1, hi=16)
