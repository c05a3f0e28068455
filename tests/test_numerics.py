from fractions import Fraction
from math import floor

import numpy as np
import pytest

from rpaccel.golden.numerics import (
    choose_multiplier,
    int_matmul,
    quantize_symmetric,
    requantize,
)


def spec_requantize(acc, bias, mult, shift, relu, out_bits=8):
    """docs/numerics.md, literally, with exact rationals."""
    y = floor(Fraction((acc + bias) * mult) / 2**shift + (Fraction(1, 2) if shift else 0))
    lo = 0 if relu else -(2 ** (out_bits - 1))
    return max(lo, min(2 ** (out_bits - 1) - 1, y))


def test_requantize_matches_literal_spec():
    rng = np.random.default_rng(0)
    n = 4000
    edges = [-(2**31), -(2**31) + 1, -1, 0, 1, 2**31 - 2, 2**31 - 1]
    acc = np.where(rng.random(n) < 0.2, rng.choice(edges, n),
                   rng.integers(-(2**31), 2**31, n))
    bias = rng.integers(-(2**31), 2**31, n)
    mult = rng.integers(0, 2**16, n)
    shift = rng.integers(0, 64, n)
    relu = rng.integers(0, 2, n).astype(bool)
    got = requantize(acc, bias, mult, shift, relu)
    for k in range(n):
        exp = spec_requantize(int(acc[k]), int(bias[k]), int(mult[k]), int(shift[k]), relu[k])
        assert got[k] == exp, (k, acc[k], bias[k], mult[k], shift[k], relu[k], got[k], exp)


@pytest.mark.parametrize("acc, shift, expected", [
    (3, 1, 2), (-3, 1, -1), (5, 1, 3), (-5, 1, -2),   # half rounds up (towards +inf)
    (7, 2, 2), (-6, 2, -1), (-7, 2, -2), (100, 0, 100),
])
def test_requantize_rounding_half_up(acc, shift, expected):
    assert requantize(acc, 0, 1, shift) == expected


def test_requantize_relu_and_saturation():
    assert requantize(-50, 0, 1, 0, relu=True) == 0
    assert requantize(-500, 0, 1, 0) == -128
    assert requantize(500, 0, 1, 0, relu=True) == 127
    assert requantize(40000, 0, 1, 0, out_bits=16) == 32767


def test_requantize_rejects_out_of_range_fields():
    with pytest.raises(ValueError, match="shift must be in"):
        requantize(1, 0, 1, 64)
    with pytest.raises(ValueError, match="mult must be in"):
        requantize(1, 0, 1 << 16, 0)


def test_choose_multiplier_is_accurate_and_normalised():
    real = np.geomspace(1e-9, 3.0, 200)
    mult, shift = choose_multiplier(real)
    assert np.all((mult >= 2**14) & (mult < 2**15))
    assert np.allclose(mult / 2.0**shift, real, rtol=2**-14)
    with pytest.raises(ValueError):
        choose_multiplier([0.0])


def test_quantize_symmetric_ranges():
    assert list(quantize_symmetric([-1000, -0.5, 0.5, 1.5, 1000], 1.0)) == [-128, 0, 0, 2, 127]
    assert quantize_symmetric([-1000], 1.0, narrow=True)[0] == -127


def test_int_matmul_is_exact():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (50, 700))
    w = rng.integers(-127, 128, (700, 30))
    assert np.array_equal(int_matmul(x, w), x.astype(np.int64) @ w.astype(np.int64))
