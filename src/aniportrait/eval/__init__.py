"""Evaluation metrics: FID and KID x 100 (the paper's section 4 metrics) and control accuracy / identity consistency.

- :mod:`aniportrait.eval.inception`: the FID Inception-v3 feature extractor (2048-d pool features), written from the
  architecture, loading pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; a tiny random one for tests.
- :mod:`aniportrait.eval.metrics`: :func:`~aniportrait.eval.metrics.frechet_distance`,
  :func:`~aniportrait.eval.metrics.kernel_inception_distance`, :func:`~aniportrait.eval.metrics.extract_features`
  and a generator sampler for the "N generated vs N real" protocol.
- :mod:`aniportrait.eval.control`: control errors (camera, head pose, shoulder pose, expression) of renders with
  given labels, estimated back by a pluggable estimator, and identity consistency across poses and expressions. These
  two are *not* in the paper (it reports FID/KID only); no published peer reports them.
- :mod:`aniportrait.eval.estimator`: the synthetic world's learned label estimator (a small CNN with shipped weights
  and its held-out floor), the estimator of models trained on the synthetic dataset; its features give the
  ``fidelity`` number. :mod:`aniportrait.eval.estimator_train` trains it.
- :mod:`aniportrait.eval.snapshot`: control errors and fidelity of a generator in one cheap call, for training
  snapshots.
"""

from aniportrait.eval.errors import EvalError

__all__ = ["EvalError"]
