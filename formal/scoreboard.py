"""A tracked-beat scoreboard: beats leave a component in order, with none lost, duplicated or
invented."""

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Cover, Signal, Value

from .rules import transfer

__all__ = ["Scoreboard"]


class Scoreboard:
    """Checks that the beats of ``o`` are those of ``i``, in order, none lost, duplicated or
    invented.

    It counts the beats held (transfers on ``i`` minus those on ``o``), and follows one tracked
    beat, chosen by the solver: any beat of ``i`` whose payload is ``tag`` (any constant) may be
    tracked, when ``pick`` (any value each cycle) is high. It remembers how many beats are ahead
    of it, counts them down as they leave, and asserts that the beat on ``o`` when none is left
    ahead carries ``tag``. A beat lost, duplicated or reordered shifts the count, so some choice
    of beat and ``tag`` fails; a beat invented makes the held count negative; a beat that never
    leaves is caught by the stall bound.

    Properties (asserted):

    - ``0 <= held <= capacity``;
    - ``o.valid`` implies ``held >= 1`` (or, with ``capacity == 0``, ``i.valid``);
    - the tracked beat leaves with payload ``tag``, and is among the beats held until then;
    - ``o.valid`` is low for at most ``stall`` cycles in a row while beats are held (a bounded
      "no loss");
    - with ``inside``: the beats held are those inside the component, the facts of its state
      hold, and the tracked beat is inside, at its place (``ahead``), with payload ``tag``.

    Parameters
    ----------
    m : Module
        The proof's module.
    i, o : stream interfaces
        The input and output streams, seen from the component under proof (``i`` received,
        ``o`` driven). With ``convert``, the payloads of ``o`` are compared with
        ``convert(payload of i)``.
    capacity : int
        The beats the component may hold.
    stall : int or None
        The longest run of cycles with beats held and ``o.valid`` low; ``None`` for no bound.
    track : bool
        Follow a tracked beat; without it only the counts are checked.
    inside : formal.views.Inside or None
        The beats inside the component, as its ``formal_view`` shows them. Without it, an
        unbounded proof (k-induction) of the tracked beat cannot close: the induction step may
        start with a wrong payload held inside, which it finds only when that beat leaves, and
        a consumer may stall it for longer than any induction depth. Such proofs are run
        bounded.
    convert : callable
        The payload of ``o`` expected for a payload of ``i``; the identity by default.

    Attributes
    ----------
    held : Signal
        The beats held.
    """

    def __init__(self, m, i, o, *, capacity, stall=None, convert=None, track=True, inside=None,
                 name="sb"):
        self.capacity = capacity
        width = (capacity + 1).bit_length() + 1      # one spare bit: a negative count shows
        self.held = held = Signal(width, name=f"{name}_held")
        put, get = transfer(i), transfer(o)
        m.d.sync += held.eq(held + put - get)
        m.d.comb += [
            Assert(held <= capacity, f"{name}: beats held within capacity (none invented)"),
            Cover(held == capacity, f"{name}: the component fills"),
        ]
        if capacity:
            m.d.comb += Assert(~o.valid | (held != 0), f"{name}: a beat offered is one held")
        else:       # a multiplexer: what it offers arrives in the same cycle
            m.d.comb += Assert(~o.valid | i.valid, f"{name}: a beat offered is one arriving")

        if stall is not None:
            waiting = Signal(range(stall + 2), name=f"{name}_waiting")
            with m.If((held != 0) & ~o.valid):
                m.d.sync += waiting.eq(waiting + 1)
            with m.Else():
                m.d.sync += waiting.eq(0)
            m.d.comb += Assert(waiting <= stall, f"{name}: a held beat is offered in time")
        if inside is not None:
            m.d.comb += Assert(held == inside.held, f"{name}: the beats held are those inside")
            m.d.comb += [Assert(fact, f"{name}: {message}") for fact, message in inside.facts]
        if track:
            self._track(m, i, o, convert, width, inside, name)

    def _track(self, m, i, o, convert, width, inside, name):
        held, put, get = self.held, transfer(i), transfer(o)
        payload_i, payload_o = Value.cast(i.payload), Value.cast(o.payload)
        expect = payload_i if convert is None else Value.cast(convert(i.payload))
        tag = Signal.like(payload_o, name=f"{name}_tag")
        pick = Signal(name=f"{name}_pick")
        m.d.comb += [tag.eq(AnyConst(tag.shape())), pick.eq(AnySeq(1))]
        tracking = Signal(name=f"{name}_tracking")
        done = Signal(name=f"{name}_done")
        ahead = Signal(width, name=f"{name}_ahead")
        start = Signal(name=f"{name}_start")
        m.d.comb += start.eq(put & pick & ~tracking & ~done & (expect == tag))
        m.d.comb += Assert(~(tracking & done), f"{name}: one beat tracked")
        with m.If(start & get & (held == 0)):
            # None held: the beat passes straight through (a multiplexer).
            m.d.comb += Assert(payload_o == tag, f"{name}: the tracked beat passes unchanged")
            m.d.sync += done.eq(1)
        with m.Elif(start):
            # Beats ahead: all held, less one leaving now.
            m.d.sync += [tracking.eq(1), ahead.eq(held - get)]
        with m.If(tracking & get):
            with m.If(ahead == 0):
                m.d.comb += Assert(payload_o == tag, f"{name}: the tracked beat leaves in order")
                m.d.sync += [tracking.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += ahead.eq(ahead - 1)
        with m.If(tracking):
            m.d.comb += Assert(ahead < held, f"{name}: the tracked beat is still held")
            if inside is not None:
                m.d.comb += Assert(inside.at(ahead) == Value.cast(tag),
                                   f"{name}: the tracked beat is inside, at its place")
        m.d.comb += Cover(done, f"{name}: a tracked beat leaves")
