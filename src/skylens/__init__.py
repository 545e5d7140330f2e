"""skylens: talk to satellite and aerial imagery."""

from skylens.models.base import available, load

__version__ = "0.1.0"
__all__ = ["__version__", "available", "load"]
