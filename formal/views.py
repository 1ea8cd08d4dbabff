"""What a proof sees of the beats held inside the stream kit: how many, and each one's payload by
its place in line, read from the components' ``formal_view``.

With these, an unbounded proof (k-induction) of the tracked beat closes: the
:class:`~formal.scoreboard.Scoreboard` asserts that the tracked beat is inside, at its place,
with its payload, so that no state in which a held payload differs from the one that went in
is left to the induction step.
"""

from collections.abc import Callable
from dataclasses import dataclass

from amaranth.hdl import Array, Mux, Value

__all__ = ["Inside", "skid", "queue", "register", "line"]


@dataclass(frozen=True)
class Inside:
    """The beats a component holds.

    Attributes
    ----------
    held : Value
        How many.
    at : callable
        ``at(place)``: the payload (as bits) of the beat at ``place``, 0 being the next to
        leave; meaningful for ``place < held``.
    facts : tuple of (Value, str)
        Properties of the component's state, true in every reachable state, with their
        messages: the scoreboard asserts them, which rules the unreachable states out of the
        induction step.
    """

    held: Value
    at: Callable
    facts: tuple = ()


def skid(view):
    """The beats of a :class:`~hw.skid.SkidBuffer` (its ``formal_view``): the main register
    (``o``) first, then the skid register."""
    o = view.o
    return Inside(
        held=o.valid + view.skid_valid,
        at=lambda place: Mux(place == 0, Value.cast(o.payload), Value.cast(view.skid)))


def queue(view):
    """The beats of a :class:`~hw.stream.Queue` elaborated with ``formal`` (its
    ``formal_view``): the FIFO's output register (``r_rdy``, ``r_data``) first, then the rows
    of its storage from ``consume`` on, around the ring. The rows held are those from
    ``consume`` to ``produce``: ``produce`` is ``level - r_rdy`` rows after ``consume``."""
    fifo, rows = view.fifo, view.rows
    depth = len(rows)
    stored = fifo.level - fifo.r_rdy

    def ring(offset):
        # ``consume + offset`` around the ring, for an offset below ``depth``.
        row = view.consume + offset
        return Mux(row >= depth, row - depth, row)

    def at(place):
        offset = (place - fifo.r_rdy).as_unsigned()[:len(view.consume) + 1]
        return Mux(fifo.r_rdy & (place == 0), fifo.r_data, Array(rows)[ring(offset)])

    facts = [(view.produce == ring(stored)[:len(view.produce)],
              "the rows held are those from the read row to the written one"),
             ((fifo.level >= fifo.r_rdy) & (stored <= depth),
              "the rows held are at most all of them")]
    if depth < 1 << len(view.consume):      # else every value of ``consume`` is a row
        facts.append((view.consume < depth, "the read row is a row"))
    return Inside(held=fifo.level, at=at, facts=tuple(facts))


def register(valid, payload):
    """The beat of a register with a valid flag: one beat while ``valid``."""
    return Inside(held=valid, at=lambda place: Value.cast(payload))


def line(*stages):
    """The beats of components in a line, each :class:`Inside` given from the output's end:
    the first component's beats leave first."""
    held = sum((stage.held for stage in stages), Value.cast(0))

    def at(place):
        offsets, total = [], Value.cast(0)
        for stage in stages:
            offsets.append(total)
            total = total + stage.held
        value = stages[-1].at(place - offsets[-1])
        for stage, offset in zip(reversed(stages[:-1]), reversed(offsets[:-1]), strict=True):
            value = Mux(place < offset + stage.held, stage.at(place - offset), value)
        return value

    return Inside(held=held, at=at, facts=sum((stage.facts for stage in stages), ()))
