"""Data files shipped with the package (see each folder's README and LICENSE)."""
