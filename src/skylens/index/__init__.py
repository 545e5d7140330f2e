"""index: a LanceDB table of chips per archive, and the ingest pipeline that fills it."""

from skylens.index.store import ChipIndex, SearchHit, hits_to_geojson

__all__ = ["ChipIndex", "SearchHit", "hits_to_geojson"]
