"""Licences of the sources a curated record may come from, as their releases state them.

A record carries its source's licence so that an exported training set can be filtered by what
its user may do with it; unknown sources say so rather than guess.
"""

from __future__ import annotations

#: source name -> licence (from each release; see ../shared/data/README.md).
LICENCES: dict[str, str] = {
    "ucm_landuse": "public-domain USGS imagery (Yang & Newsam 2010)",
    "ucm_captions": "research use (Qu et al. 2016)",
    "nwpu_resisc45": "research use (Cheng et al. 2017)",
    "eurosat": "MIT (Helber et al. 2019)",
    "dota": "research use (Xia et al. 2018); Google Earth imagery",
    "rsicd": "research use (Lu et al. 2017)",
    "rsitmd": "research use (Yuan et al. 2022)",
    "sydney_captions": "research use (Qu et al. 2016)",
    "rsivqa": "research use (Zheng et al. 2022)",
    "aid": "research use (Xia et al. 2017)",
    "osm": "ODbL (OpenStreetMap contributors); imagery licence of the raster applies",
}

UNKNOWN = "unknown (not stated by the source)"


def licence_of(source: str) -> str:
    """The licence of ``source``, or ``UNKNOWN``."""
    return LICENCES.get(source, UNKNOWN)
