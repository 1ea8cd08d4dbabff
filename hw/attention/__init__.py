"""Tiled attention: the controller that computes softmax(Q K^T / sqrt(d)) V on a GEMM engine and a
softmax it does not own, one module per part.

:mod:`.controller` holds :class:`AttentionController`, the component. Its ``elaborate`` calls the
builders ``build_*(ctl, m, ns)`` of the other modules in order (``ctl`` the controller, ``m``
its module, ``ns`` a namespace where each builder leaves the values later ones use):
:mod:`.scratchpads`, :mod:`.command`, :mod:`.loaders`, :mod:`.issuer`, :mod:`.operands`,
:mod:`.output_walker`, :mod:`.feeder` (the softmax feeder and serializer) and :mod:`.p_writer`.
:mod:`.jobs` holds the job order that the issuer and the output walker both follow.
"""

from .command import attention_cmd_layout
from .controller import AttentionController

__all__ = ["attention_cmd_layout", "AttentionController"]
