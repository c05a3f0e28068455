"""Arithmetic helpers shared by the blocks."""

from __future__ import annotations

from amaranth import Mux, Value

__all__ = ["lut_mul"]


def lut_mul(a, b) -> Value:
    """Unsigned product ``a * b`` built from shifted partial products summed in a
    balanced adder tree.

    Yosys' ``synth_ecp5`` maps every ``$mul`` whose operands have two bits or more to a
    MULT18X18D; index arithmetic (tile counts, small address products) would take
    multipliers the datapath needs. Spelled as adds, it goes to LUTs and carry chains.
    Meant for narrow operands: the tree has one level per doubling of the narrower
    operand's bits.

    Parameters
    ----------
    a, b : Value-like
        The operands, taken as unsigned (a signed one as its bits).

    Returns
    -------
    Value
        ``len(a) + len(b)`` bits wide, equal to ``a * b``.
    """
    a, b = Value.cast(a).as_unsigned(), Value.cast(b).as_unsigned()
    width = len(a) + len(b)
    if len(b) > len(a):
        a, b = b, a
    terms = [Mux(b[i], a << i, 0) for i in range(len(b))] or [Value.cast(0)]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0][:width] if len(terms[0]) > width else terms[0]
