"""Money: rounding to a currency's minor unit so that rounded lines sum to the rounded total
(largest remainder, ties broken by line order, which the caller keeps stable)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

# ISO 4217 minor units where they are not 2
MINOR_UNITS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}


def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency`` (0.01 EUR, 1 JPY, 0.001 KWD)."""
    return Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))


def round_total(amount: Decimal, currency: str) -> Decimal:
    """A total rounded half-even to the currency's minor unit."""
    return amount.quantize(quantum(currency), ROUND_HALF_EVEN)


def allocate(amounts: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Each amount rounded to the minor unit such that the results sum to the rounded sum:
    floor every line, then give the missing units to the lines with the largest remainders."""
    q = quantum(currency)
    target = round_total(sum(amounts, Decimal(0)), currency)
    floors = [a.quantize(q, ROUND_FLOOR) for a in amounts]
    missing = int((target - sum(floors, Decimal(0))) / q)
    order = sorted(range(len(amounts)), key=lambda i: (-(amounts[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += q
    return floors
