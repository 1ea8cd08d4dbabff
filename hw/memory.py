"""Memory intent, declared where a memory is made."""

__all__ = ["UNCONTENDED", "uncontended"]

#: Attribute of a memory whose read data is never used in a cycle that writes the address it
#: reads. Amaranth asks for the old data on such a collision; block RAMs do not give it across
#: their two ports, so Yosys would emulate it with a register on every write input and a bypass
#: multiplexer on every read output, on the paths to and from the block RAM. The synthesis flows
#: (:func:`boards.synth.relax_collisions`) mark the collisions of these memories undefined
#: instead, and the tests (``new_data_reads`` in ``tests/conftest.py``) check the claim: every
#: result must stay the same when these memories return the new data.
UNCONTENDED = "intformer_uncontended"


def uncontended(attrs=None):
    """Memory attributes ``attrs`` plus the :data:`UNCONTENDED` mark."""
    return {**(attrs or {}), UNCONTENDED: 1}
