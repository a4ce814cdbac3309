"""The Open Inference Protocol (v2) endpoints, mixed into the router deployment."""

from __future__ import annotations


class OpenInferenceEndpoints:
    """REST routes of the Open Inference Protocol (filled in by the protocol module)."""
