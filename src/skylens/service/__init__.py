"""service: the REST API and web page behind ``skylens serve`` (FastAPI; ``pip install skylens[serve]``)."""

from skylens.service.app import create_app

__all__ = ["create_app"]
