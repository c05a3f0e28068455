"""Host side of the board's host link (`rpaccel.hw.host_link`): command bytes out, answers
and results parsed back. The same code drives the simulated board and a real one over a
serial port."""

from __future__ import annotations

from dataclasses import dataclass

from .hw.host_link import OP as _OP

__all__ = ["Protocol", "Answer", "stream_widths", "protocol_for", "host_script", "answers_from",
           "errors_from"]


@dataclass(frozen=True)
class Answer:
    """One frame from the board: ``kind`` is ``"wrote"`` (``resp``), ``"data"``
    (``value``, ``resp``), ``"pong"``, ``"result"`` (``value``: the result beat's payload)
    or ``"unknown"`` (``value``: the byte the board did not understand)."""

    kind: str
    value: int = 0
    resp: int = 0


class Protocol:
    """Encoder and decoder of the host link for one accelerator build.

    Parameters
    ----------
    streams : list of int
        Payload widths of the board's input streams, in index order.
    result_bits : int
        Payload width of the result stream.
    mem_data_bits : int
        Width of a table-memory word.
    """

    def __init__(self, streams, result_bits: int, mem_data_bits: int):
        self.streams = list(streams)
        self.result_bytes = -(-result_bits // 8)
        self.mem_bytes = -(-mem_data_bits // 8)
        self._rx = bytearray()

    # ---- host -> board ------------------------------------------------------------------
    @staticmethod
    def write(addr: int, value: int) -> bytes:
        """A CSR write (answered ``wrote``)."""
        return bytes([_OP["write"]]) + addr.to_bytes(2, "little") + \
            (value & 0xFFFF_FFFF).to_bytes(4, "little")

    @staticmethod
    def read(addr: int) -> bytes:
        """A CSR read (answered ``data``)."""
        return bytes([_OP["read"]]) + addr.to_bytes(2, "little")

    def mem(self, word: int, data: bytes) -> bytes:
        """One table-memory word write (not answered)."""
        if len(data) != self.mem_bytes:
            raise ValueError(f"a memory word must be {self.mem_bytes} bytes, not {len(data)}")
        return bytes([_OP["mem"]]) + word.to_bytes(4, "little") + data

    def mem_image(self, image: bytes, base: int = 0) -> bytes:
        """Every word of ``image`` (padded to whole words) from byte address ``base``."""
        if base % self.mem_bytes:
            raise ValueError(f"base must be a multiple of {self.mem_bytes}, not {base}")
        pad = -len(image) % self.mem_bytes
        image = bytes(image) + bytes(pad)
        w0 = base // self.mem_bytes
        return b"".join(self.mem(w0 + i, image[i * self.mem_bytes:(i + 1) * self.mem_bytes])
                        for i in range(len(image) // self.mem_bytes))

    def beat(self, index: int, payload: int) -> bytes:
        """One beat on input stream ``index`` (not answered)."""
        if not 0 <= index < len(self.streams):
            raise ValueError(f"stream index must be from 0 to {len(self.streams) - 1}, "
                             f"not {index}")
        n = -(-self.streams[index] // 8)
        return bytes([_OP["stream"], index]) + \
            (payload & ((1 << self.streams[index]) - 1)).to_bytes(n, "little")

    @staticmethod
    def ping() -> bytes:
        """Answered ``pong`` once every earlier command is carried out."""
        return bytes([_OP["ping"]])

    # ---- board -> host ------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Answer]:
        """Parse received bytes; the complete frames among them (a partial frame waits
        for the next call)."""
        self._rx += data
        out = []
        sizes = {_OP["wrote"]: 2, _OP["data"]: 6, _OP["pong"]: 1,
                 _OP["result"]: 1 + self.result_bytes, _OP["unknown"]: 2}
        while self._rx:
            op = self._rx[0]
            if op not in sizes:
                raise ValueError(f"unexpected byte {op:#04x} from the board")
            n = sizes[op]
            if len(self._rx) < n:
                break
            frame, self._rx = bytes(self._rx[:n]), self._rx[n:]
            if op == _OP["wrote"]:
                out.append(Answer("wrote", resp=frame[1] & 3))
            elif op == _OP["data"]:
                out.append(Answer("data", int.from_bytes(frame[1:5], "little"), frame[5] & 3))
            elif op == _OP["pong"]:
                out.append(Answer("pong"))
            elif op == _OP["result"]:
                out.append(Answer("result", int.from_bytes(frame[1:], "little")))
            else:
                out.append(Answer("unknown", frame[1]))
        return out


def stream_widths(config) -> list[int]:
    """Payload widths of the board's input streams in the host link's index order:
    ``query``, ``eload_<e>`` for every engine, ``mload_<s>`` for every stage (as
    `rpaccel.hw.board.board_streams` wires them)."""
    from .hw.embedding import emb_layouts
    from .interface import engine_layouts, engine_width, top_layouts

    return ([top_layouts(config)[0].size] +
            [engine_layouts(config, engine_width(config, e)).load.size
             for e in range(config.engine_count)] +
            [emb_layouts(config)[2].size] * config.stages)


def protocol_for(config) -> Protocol:
    """The `Protocol` of a board built for ``config``."""
    from .interface import top_layouts

    return Protocol(stream_widths(config), top_layouts(config)[1].size, config.axi_data_bits)


def host_script(acc, job: dict, table_words: int | None = None) -> bytes:
    """Everything the host sends for ``job`` (`rpaccel.runtime.Accelerator.job`): the
    embedding tables into the table memory (all-zero words skipped: the memory starts
    zeroed), the CSRs, the model through the load streams, a ping, then every query's
    beats. Raises `ValueError` when the tables do not fit the board's ``table_words``
    (default `rpaccel.hw.board.TABLE_WORDS`)."""
    from .hw.board import TABLE_WORDS
    from .hw.embedding import emb_layouts
    from .hw.loader import load_packer
    from .interface import beat_packer, engine_layouts, engine_width, top_layouts

    cfg = acc.config
    proto = protocol_for(cfg)
    out = bytearray()
    tables_end = acc.loads[0][0] if acc.loads else len(job["dram"])
    image, w = job["dram"][:tables_end], proto.mem_bytes
    words = table_words or TABLE_WORDS
    if len(image) > words * w:
        raise ValueError(f"table_words: the embedding tables ({len(image):,} bytes) must fit "
                         f"the board's table memory ({words:,} words of {w} bytes)")
    for i in range(0, len(image), w):
        word = image[i:i + w].ljust(w, b"\0")
        if any(word):
            out += proto.mem(i // w, word)
    for addr, value in job["csr"]:
        out += proto.write(addr, value)
    for e in range(cfg.engine_count):
        pack = load_packer(engine_layouts(cfg, engine_width(cfg, e)).load)
        out += b"".join(proto.beat(1 + e, pack(b)) for b in job["eload"][e])
    pack = load_packer(emb_layouts(cfg)[2])
    for s in range(cfg.stages):
        out += b"".join(proto.beat(1 + cfg.engine_count + s, pack(b)) for b in job["mload"][s])
    out += proto.ping()
    pack = beat_packer(top_layouts(cfg)[0])
    for q in job["queries"]:
        out += b"".join(proto.beat(0, pack(b)) for b in q["beats"])
    return bytes(out)


def answers_from(config, frames) -> list[list[tuple[int, int]]]:
    """Result frames (`Answer` of kind ``"result"``) grouped into queries: ``(id, score)``
    per survivor, a query ending at a beat with ``last``; ``error`` flags by query in
    `errors_from`."""
    return [[(r["id"], r["score"]) for r in q] for q in _queries(config, frames)]


def errors_from(config, frames) -> list[bool]:
    """Whether each answered query came back flagged (``error`` on its beats)."""
    return [all(r["error"] for r in q) for q in _queries(config, frames)]


def _queries(config, frames):
    from .interface import top_layouts

    layout = top_layouts(config)[1]
    out, cur = [], []
    for a in frames:
        if a.kind != "result":
            continue
        v = layout.from_bits(a.value)
        cur.append({"id": int(v.id), "score": int(v.score), "last": int(v.last),
                    "error": int(v.error)})
        if cur[-1]["last"]:
            out.append(cur)
            cur = []
    return out
