"""Integer arithmetic of RPAccel, exactly as `docs/numerics.md` states it.

Every function here is the reference the RTL is checked against, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "INT8_MIN",
    "INT8_MAX",
    "requantize",
    "choose_multiplier",
    "quantize_symmetric",
    "int_matmul",
]

INT8_MIN = -128
INT8_MAX = 127
#: Multipliers are normalised into [2**(MULT_FRAC-1), 2**MULT_FRAC) when possible.
MULT_FRAC = 15


def requantize(acc, bias, mult, shift, relu=False, out_bits: int = 8):
    """Requantize int32 accumulators to ``out_bits``-bit integers.

    ``y = clamp(floor(((acc + bias) * mult + 2**(shift-1)) / 2**shift), lo, hi)`` with
    ``lo = 0`` when ``relu`` else ``-2**(out_bits-1)``, ``hi = 2**(out_bits-1) - 1``, and no
    rounding term when ``shift == 0``. Rounding is half up (towards +infinity).

    Parameters
    ----------
    acc, bias : array_like of int
        Signed accumulators and biases (broadcast together).
    mult : array_like of int
        Unsigned multipliers.
    shift : array_like of int
        Right-shift amounts, 0 to 63.
    relu : bool or array_like of bool
        Clamp negatives to zero.
    out_bits : int
        Output width.

    Returns
    -------
    numpy.ndarray of int64
    """
    acc = np.asarray(acc, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 0) or np.any(shift > 63):
        raise ValueError(f"shift must be in [0, 63], not {shift.min()}..{shift.max()}")
    if np.any(mult < 0) or np.any(mult >= 1 << 16):
        raise ValueError(f"mult must be in [0, 65535], not {mult.min()}..{mult.max()}")
    # one array, updated in place: the golden models requantize millions of values
    y = np.empty(np.broadcast_shapes(acc.shape, bias.shape, mult.shape, shift.shape), np.int64)
    np.add(acc, bias, out=y)
    if y.size and (y.max() >= 1 << 33 or y.min() <= -(1 << 33)):
        raise ValueError("acc + bias must fit in 34 signed bits")
    np.multiply(y, mult, out=y)  # < 2**49 in magnitude: exact in int64
    # floor((p + 2**(s-1)) / 2**s) == ((2p >> s) + 1) >> 1, which also gives p for s == 0.
    np.left_shift(y, 1, out=y)
    np.right_shift(y, shift, out=y)
    np.add(y, 1, out=y)
    np.right_shift(y, 1, out=y)
    hi = (1 << (out_bits - 1)) - 1
    lo = np.where(np.asarray(relu, dtype=bool), 0, -(1 << (out_bits - 1)))
    return np.clip(y, lo, hi, out=y)


def choose_multiplier(real, mult_bits: int = 16, max_shift: int = 63):
    """Approximate positive real scales as ``mult / 2**shift``.

    ``mult`` is normalised into ``[2**14, 2**15)`` when the shift range allows, which keeps
    the product ``(acc + bias) * mult`` within 49 signed bits for any int32 accumulator.

    Parameters
    ----------
    real : array_like of float
        Positive scale factors.
    mult_bits : int
        Width of the unsigned multiplier (at least 15 is needed for the normalised form).
    max_shift : int
        Largest shift allowed.

    Returns
    -------
    (mult, shift) : tuple of numpy.ndarray of int64
    """
    real = np.atleast_1d(np.asarray(real, dtype=np.float64))
    if np.any(~np.isfinite(real)) or np.any(real <= 0):
        raise ValueError("scales must be positive and finite")
    frac = min(MULT_FRAC, mult_bits)
    mult = np.empty(real.shape, dtype=np.int64)
    shift = np.empty(real.shape, dtype=np.int64)
    for i, r in np.ndenumerate(real):
        e = math.floor(math.log2(r))
        s = int(np.clip(frac - 1 - e, 0, max_shift))
        m = int(round(r * (1 << s)))
        if m >= 1 << frac and s > 0:  # rounding carried into the next power of two
            s -= 1
            m = int(round(r * (1 << s)))
        mult[i] = min(max(m, 0), (1 << mult_bits) - 1)
        shift[i] = s
    return mult, shift


def quantize_symmetric(x, scale, bits: int = 8, narrow: bool = False):
    """Quantize floats: ``clamp(rint(x / scale))`` (round half to even), zero point 0.

    ``narrow`` uses ``[-(2**(bits-1)-1), 2**(bits-1)-1]`` (weights), otherwise the full
    two's-complement range (activations).
    """
    hi = (1 << (bits - 1)) - 1
    lo = -hi if narrow else -(1 << (bits - 1))
    q = np.rint(np.asarray(x, dtype=np.float64) / scale)
    return np.clip(q, lo, hi).astype(np.int64)


def int_matmul(x, w_t):
    """Exact integer ``x @ w_t`` for int8-range operands.

    Products of int8 values summed over fewer than 2**38 terms are exact in float64, so BLAS
    gives the exact integer result much faster than an int64 matmul.
    """
    x = np.asarray(x)
    w_t = np.asarray(w_t)
    if x.shape[-1] >= 1 << 38:
        raise ValueError("reduction too long for exact float64 accumulation")
    y = x.astype(np.float64) @ w_t.astype(np.float64)
    return np.rint(y, out=y).astype(np.int64)
