"""RPAccel RTL (Amaranth HDL 0.5)."""

from amaranth.back import rtlil as _rtlil

_emit_memory = _rtlil.ModuleEmitter.emit_memory


def _emit_memory_unless_zero(self, cell_idx, cell):
    # Amaranth 0.5 writes a memory's initial contents bit by bit (about 5 us per bit: 20 s
    # for one 64-bit x 64k-word buffer) even when they are all zero. RPAccel's buffers are
    # written before they are read (model load, then each sub-batch), so all-zero memories
    # are emitted without initial contents: they synthesize to plain BRAM.
    if any(cell.init):
        _emit_memory(self, cell_idx, cell)


_rtlil.ModuleEmitter.emit_memory = _emit_memory_unless_zero


def to_verilog(component, config, name: str) -> str:
    """Verilog of ``component`` as module ``name``, followed by the shared tile module when
    ``config.tile_modules`` is set (the design instantiates it by name)."""
    from amaranth.back import verilog

    text = verilog.convert(component, name=name)
    if config.tile_modules:
        from .array import tile_module_verilog

        text += "\n" + tile_module_verilog(config)
    return text
