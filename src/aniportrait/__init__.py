"""AniPortraitGAN in PyTorch with fused Triton kernels.

Heavy modules are imported on demand: ``import aniportrait`` stays cheap. The public kernel API is
:mod:`aniportrait.ops`.
"""

__version__ = "0.1.0"
