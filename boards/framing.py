"""The link's byte arithmetic: frame sizes, how buffer commands are chunked, and
:class:`LinkCount`, which counts a driver's bytes without sending them. :class:`boards.host.Client`
frames its commands with these, and the model planner (:mod:`intformer.model.plan`) counts with
them."""

__all__ = ["BAUD", "BITS_PER_BYTE", "LENGTH_BYTES", "BUFFER_HEADER", "STATUS_BYTES",
           "frame_bytes", "reg_value_bytes", "write_chunks", "read_chunks", "LinkCount"]

#: The serial line's rate, the boards' and the host driver's default, and bits on the line per
#: byte (8N1: a start bit, 8 data bits, a stop bit; :mod:`boards.uart`). 3 Mbaud is the FT231X's
#: highest rate (the ULX3S's USB UART; the iCEBreaker's FT2232H goes higher), and both boards'
#: clocks divide it exactly (``tests/boards/test_uart.py``). The link bounds a board's model
#: forward, so it runs as fast as the USB UART allows.
BAUD = 3_000_000
BITS_PER_BYTE = 10
#: Bytes of a frame's length field (little-endian), after the sync byte and the opcode (a
#: response: the status); the crc is one byte after the payload (:mod:`boards.link`).
LENGTH_BYTES = 2
#: Bytes of a WRITE_BUFFER / READ_BUFFER payload before the words: buf, addr (2), count (2).
BUFFER_HEADER = 5
#: Bytes of a STATUS response payload: flags, last error.
STATUS_BYTES = 2


def frame_bytes(payload_len):
    """Bytes on the line of one request or response frame carrying ``payload_len`` bytes:
    sync, opcode or status, the length, the payload and the crc (what :meth:`Board.send_frame`
    writes and :meth:`Board.receive_frame` reads)."""
    return 2 + LENGTH_BYTES + payload_len + 1


def reg_value_bytes(value):
    """Bytes of ``value`` in a SET_REG payload (little-endian, at least one)."""
    return max(1, -(-int(value).bit_length() // 8))


def write_chunks(count, nbytes, max_payload):
    """``(start, count)`` of each WRITE_BUFFER that writes ``count`` words of ``nbytes`` bytes
    within a ``max_payload``-byte payload."""
    per = max(1, (max_payload - BUFFER_HEADER) // nbytes)
    return [(s, min(per, count - s)) for s in range(0, count, per)]


def read_chunks(count, nbytes, max_payload):
    """``(start, count)`` of each READ_BUFFER that reads ``count`` words of ``nbytes`` bytes,
    each response within ``max_payload`` bytes."""
    per = max(1, max_payload // nbytes)
    return [(s, min(per, count - s)) for s in range(0, count, per)]



class LinkCount:
    """Bytes a :class:`Client` sends and receives on the link, counted from the same framing
    (:func:`frame_bytes`) and chunking (:func:`write_chunks`, :func:`read_chunks`,
    :func:`reg_value_bytes`) the driver uses, without sending anything.

    Attributes
    ----------
    sent, received : int
        Bytes from the host and to it.
    commands : int
        Request frames.
    """

    def __init__(self, max_payload=255):
        self.max_payload = max_payload
        self.sent = self.received = self.commands = 0

    def command(self, payload_len, response_len=0, times=1):
        """``times`` commands of ``payload_len`` bytes, each answered by ``response_len``."""
        self.sent += times * frame_bytes(payload_len)
        self.received += times * frame_bytes(response_len)
        self.commands += times

    def write_buffer(self, spec, count, times=1):
        """WRITE_BUFFER of ``count`` words of buffer ``spec`` (a :class:`hw.isa.BufferSpec`)."""
        for _, cnt in write_chunks(count, spec.nbytes, self.max_payload):
            self.command(BUFFER_HEADER + cnt * spec.nbytes, times=times)

    def read_buffer(self, spec, count, times=1):
        """READ_BUFFER of ``count`` words of buffer ``spec``."""
        for _, cnt in read_chunks(count, spec.nbytes, self.max_payload):
            self.command(BUFFER_HEADER, cnt * spec.nbytes, times=times)

    def set_reg(self, value, times=1):
        """SET_REG of ``value``."""
        self.command(1 + reg_value_bytes(value), times=times)

    def run(self, times=1, polls=1):
        """RUN (its op byte), then ``polls`` STATUS polls (at least the one that finds the run
        done)."""
        self.command(1, times=times)
        self.command(0, STATUS_BYTES, times=times * polls)

    @property
    def total(self):
        return self.sent + self.received
