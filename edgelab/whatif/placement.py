"""Where code runs relative to its user and its data, and the round trips that follow from physics.

A what-if's network figures are floors, not guesses: light in fibre covers ~200 km per ms, so a
round trip between two places takes at least 2 x great-circle distance / 200 km/ms; real paths
are longer (routing, switching), which ``inflation`` (>= 1) stands for. The places come from
``edgelab/data/cities.toml`` (cities where users are, cloud regions where central code and data
live), so the claims checker and the simulator agree on every distance.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from edgelab.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

#: Mean Earth radius (km), the sphere the great-circle distance is taken on (IUGG).
EARTH_RADIUS_KM = 6371.0088
PlaceKind = Literal["city", "region"]


@dataclass(frozen=True)
class Place:
    """A city (users, an edge PoP) or a cloud region (central code and data)."""

    name: str
    kind: PlaceKind
    lat: float
    lon: float
    #: Words a person recognises ("N. Virginia (Ashburn)"); a city's label is its name.
    label: str


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    text = resources.files("edgelab").joinpath("data/cities.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@lru_cache(maxsize=1)
def places() -> dict[str, Place]:
    """Every known place by name, cities first (as ``cities.toml`` lists them)."""
    table = _table()
    found: dict[str, Place] = {}
    for kind in ("city", "region"):
        for name, entry in table[kind].items():
            found[name] = Place(name, kind, float(entry["lat"]), float(entry["lon"]),  # type: ignore[arg-type]
                                str(entry.get("label", name)))
    return found


def metro_km() -> float:
    """The assumed fibre distance (km, one way) from a user to an edge PoP in its own metro."""
    return float(_table()["defaults"]["metro_km"])


def fibre_km_per_ms() -> float:
    """How far light goes in fibre per millisecond (km), the basis of every RTT floor."""
    return float(_table()["defaults"]["fibre_km_per_ms"])


def place(name: str) -> Place:
    """The place called ``name`` (case and spaces forgiven), or one line naming how to list them."""
    table = places()
    if name in table:
        return table[name]
    wanted = " ".join(name.split()).casefold()
    for known, entry in table.items():
        if known.casefold() == wanted:
            return entry
    raise UsageError(f"unknown place '{name}' (edgelab whatif --list-places lists the cities and regions)")


def great_circle_km(a: str, b: str) -> float:
    """Great-circle distance (km) between two named places (haversine on the mean sphere)."""
    p, q = place(a), place(b)
    phi1, phi2 = math.radians(p.lat), math.radians(q.lat)
    dphi = phi2 - phi1
    dlam = math.radians(q.lon - p.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def check_inflation(inflation: float) -> float:
    """Path inflation must be a finite number >= 1: a path shorter than the great circle is not one."""
    if isinstance(inflation, bool) or not isinstance(inflation, (int, float)) or not math.isfinite(inflation) \
            or not 1.0 <= inflation <= 100.0:
        raise UsageError(f"path inflation must be a number from 1 to 100 (got {inflation!r})")
    return float(inflation)


def rtt_floor_ms(a: str, b: str, inflation: float = 1.0) -> float:
    """The round-trip floor (ms) between two places: 2 x great-circle km / 200 km/ms x inflation.

    Tokyo to us-east-1 (Ashburn, ~10,900 km) is >= ~109 ms at inflation 1. Two places in the
    same metro are 0 here; the simulator adds the metro hop (``metro_rtt_ms``) itself."""
    return 2.0 * great_circle_km(a, b) / fibre_km_per_ms() * check_inflation(inflation)


def metro_rtt_ms(inflation: float = 1.0) -> float:
    """A user's round trip to an edge PoP in its own metro (ms): 2 x ``metro_km`` / 200 km/ms x
    inflation (0.5 ms at the shipped 50 km and inflation 1); an assumption, said where used."""
    return 2.0 * metro_km() / fibre_km_per_ms() * check_inflation(inflation)


__all__ = [
    "Place",
    "check_inflation",
    "fibre_km_per_ms",
    "great_circle_km",
    "metro_km",
    "metro_rtt_ms",
    "place",
    "places",
    "rtt_floor_ms",
]
