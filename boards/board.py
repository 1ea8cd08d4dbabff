"""The accelerator on a board: :class:`~boards.host.Client` over the framed UART link."""

from hw.config import AccelConfig

from .framing import BAUD, LENGTH_BYTES
from .host import BoardError, Client
from .link import RSP_SYNC, SYNC, LinkError, crc8

__all__ = ["Board"]


class Board(Client):
    """The accelerator on a board, over the framed UART protocol of :mod:`boards.link`.

    Parameters
    ----------
    port_or_transport : str or object
        A serial port name (opened with ``serial.Serial(port, baud, timeout=timeout)``) or any
        object with ``write(bytes)`` and ``read(n) -> bytes`` (a transport; a short read means
        a timeout).
    cfg : AccelConfig or None
        The board's configuration; default the ``icebreaker`` preset.
    baud : int
        Baud rate for a port name.
    timeout : float
        Serial read timeout in seconds, for a port name.
    **kwargs
        ``depth``, ``max_payload``, ``max_polls`` of :class:`Client`.
    """

    def __init__(self, port_or_transport, cfg=None, *, baud=BAUD, timeout=2.0, **kwargs):
        cfg = AccelConfig.preset("icebreaker") if cfg is None else cfg
        super().__init__(cfg, **kwargs)
        if isinstance(port_or_transport, str):
            import serial
            self.transport = serial.Serial(port_or_transport, baud, timeout=timeout)
        elif hasattr(port_or_transport, "write") and hasattr(port_or_transport, "read"):
            self.transport = port_or_transport
        else:
            raise TypeError(f"Board port must be a port name or an object with write() and "
                            f"read(), not {port_or_transport!r}")

    def _read(self, n):
        data = bytes(self.transport.read(n))
        if len(data) != n:
            raise TimeoutError(f"Board sent {len(data)} of {n} expected bytes before the "
                               f"read timed out")
        return data

    def send_frame(self, opcode, payload):
        """Write one request frame: ``SYNC, opcode, length(2), payload, crc8``."""
        if len(payload) > 0xffff:
            raise ValueError(f"Frame payload must be at most 65535 bytes, not {len(payload)}")
        body = bytes([opcode]) + len(payload).to_bytes(LENGTH_BYTES, "little") + payload
        self.transport.write(bytes([SYNC]) + body + bytes([crc8(body)]))

    def receive_frame(self):
        """Read one response frame; return ``(status, payload)``. Bytes before the response
        sync byte are skipped (at most 64)."""
        for _ in range(64):
            if self._read(1)[0] == RSP_SYNC:
                break
        else:
            raise BoardError(LinkError.FRAME.value, "no response sync byte")
        head = self._read(1 + LENGTH_BYTES)
        payload = self._read(int.from_bytes(head[1:], "little"))
        crc = self._read(1)[0]
        if crc != crc8(head + payload):
            raise BoardError(LinkError.CHECKSUM.value, "response frame checksum")
        return head[0], payload

    def _exchange(self, opcode, payload):
        self.send_frame(opcode, payload)
        return self.receive_frame()
