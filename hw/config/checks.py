"""The checks that the config dataclasses run in ``__post_init__``, with Amaranth's wording."""

__all__ = ["VARIANTS", "check_int", "check_bool", "check_variant"]

#: The integer algorithms of softmax and GELU: I-BERT's, or I-ViT's shift-based ones.
VARIANTS = ("ibert", "shift")


def check_int(what, value, *, lo, hi):
    """Raise unless ``value`` is an ``int`` (not a bool) in ``[lo, hi]``.

    Messages follow Amaranth's form: "<what> must be <constraint>, not <value>".
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer from {lo} to {hi}, not {value}")


def check_variant(what, value):
    """Raise unless ``value`` is one of :data:`VARIANTS`."""
    if value not in VARIANTS:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, VARIANTS))}, not {value!r}")


def check_bool(what, value):
    """Raise unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a boolean, not {value!r}")
