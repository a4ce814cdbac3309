"""The ``/ui`` endpoints, mixed into the router deployment (see :class:`UiEndpoints`)."""

from __future__ import annotations


class UiEndpoints:
    """Routes of the live experiment page (filled in by the UI)."""
