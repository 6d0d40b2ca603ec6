"""exp and sin with the same bits on every CPU, for the image renderer.

numpy picks an implementation of `np.exp`, `np.sin`, `np.power`, … at run time from the CPU's SIMD
features (baseline SSE, AVX2+FMA, AVX-512), and glibc's libm picks FMA or SSE2 variants the same way; the
variants differ in the last bit often enough that a release rendered on another x86-64 machine had a few
different JPEGs. Here each function is a table computed once with `decimal` (software arithmetic, exactly
specified, so the table is the same everywhere) and read with linear interpolation, which needs only
IEEE add, subtract, multiply, floor and min: operations every CPU and every SIMD width round identically
(numpy never fuses them into an FMA). Square roots and integer powers stay numpy's (correctly rounded).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

_PREC = 40
_PI = Decimal("3.141592653589793238462643383279502884197169399375")
EXP_STEPS = 64  # table points per unit of x: interpolation error <= 1/(8 * 64²) ≈ 3e-5
EXP_MAX = 24.0  # exp(-24) ≈ 4e-11: beyond it the table's last value is returned
SIN_STEPS = 1024  # points per turn: interpolation error <= (2π/1024)²/8 ≈ 5e-6


def _dsin(x: Decimal) -> Decimal:
    """sin by its Taylor series at 40 digits (|x| <= 2π here)."""
    with localcontext(prec=_PREC):
        term, total, k, x2 = x, x, 1, x * x
        while True:
            term = -term * x2 / ((k + 1) * (k + 2))
            k += 2
            if abs(term) < Decimal(10) ** -(_PREC - 2):
                return total
            total += term


def _dcos(x: Decimal) -> Decimal:
    with localcontext(prec=_PREC):
        return _dsin(_PI / 2 - x)


def _table(values: list[Decimal]) -> tuple[np.ndarray, np.ndarray]:
    """(value, next value - value) at every point, as float32 (float(Decimal) is correctly rounded).

    The last point gets slope 0, so a position exactly at the end needs no special case."""
    table = np.array([float(v) for v in values], dtype=np.float64)
    return table.astype(np.float32), np.append(np.diff(table), 0.0).astype(np.float32)


def _exp_values() -> list[Decimal]:
    with localcontext(prec=_PREC):
        return [(-Decimal(i) / EXP_STEPS).exp() for i in range(int(EXP_MAX * EXP_STEPS) + 1)]


def _sin_values() -> list[Decimal]:
    with localcontext(prec=_PREC):
        return [_dsin(2 * _PI * i / SIN_STEPS) for i in range(SIN_STEPS + 1)]


_EXP_BASE, _EXP_SLOPE = _table(_exp_values())
_SIN_BASE, _SIN_SLOPE = _table(_sin_values())


def _interpolate(base: np.ndarray, slope: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Piecewise-linear table lookup at float32 positions `s` in [0, len(base) - 1]; `s` is reused."""
    k = np.floor(s)
    i = k.astype(np.int32)
    s -= k
    out = slope[i]
    out *= s
    out += base[i]
    return out


def exp_neg(x: np.ndarray) -> np.ndarray:
    """exp(-x) for x >= 0 as float32 (negative x is read as 0), identical on every CPU."""
    s = np.clip(np.asarray(x, dtype=np.float32) * np.float32(EXP_STEPS), 0, EXP_MAX * EXP_STEPS)
    return _interpolate(_EXP_BASE, _EXP_SLOPE, s)


def sin_turns(t: np.ndarray) -> np.ndarray:
    """sin(2π t) as float32 (t in turns), identical on every CPU."""
    t = np.asarray(t, dtype=np.float32)
    s = t - np.floor(t)
    s *= np.float32(SIN_STEPS)
    return _interpolate(_SIN_BASE, _SIN_SLOPE, s)


def tan_degrees(degrees: float) -> float:
    """tan of an angle in degrees, from exact decimal arithmetic (one value per image, so no table)."""
    with localcontext(prec=_PREC):
        radians = Decimal(degrees) * _PI / 180
        return float(_dsin(radians) / _dcos(radians))
