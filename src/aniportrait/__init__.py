"""AniPortraitGAN in PyTorch with fused Triton kernels.

Heavy modules are imported on demand: ``import aniportrait`` stays cheap. ``aniportrait.load`` is the Python API
for rendering (:mod:`aniportrait.api`); the public kernel API is :mod:`aniportrait.ops`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``aniportrait.load`` and the API's classes without importing torch at ``import aniportrait``.
    if name in ("load", "Portrait", "PreparedIdentity"):
        from aniportrait import api

        return getattr(api, name)
    raise AttributeError(f"module 'aniportrait' has no attribute {name!r}")
