"""The live experiment page the app serves itself (``GET /ui``)."""
