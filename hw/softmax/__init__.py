"""Integer-only softmax over streamed rows (I-BERT i-exp or I-ViT Shiftmax), one module per part.

:mod:`.unit` holds :class:`Softmax`, the component: its ports, buffers and registered constants.
Its ``elaborate`` calls the builders ``build_*(sm, m, [platform,] s)`` of the other modules in
order (``sm`` the unit, ``m`` its module, ``s`` a namespace where each builder leaves the values
later ones use): :mod:`.load` (pass 1), :mod:`.exp_issue` and :mod:`.exp_datapath` (pass 2),
:mod:`.divider` (the row's normalizer), :mod:`.normalize_issue` and :mod:`.normalize_datapath`
(pass 3).
"""

from .unit import Softmax

__all__ = ["Softmax"]
