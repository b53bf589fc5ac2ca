"""The viewer's renderer: one loaded model, a small cache of prepared identities, previews and full frames.

Independent of the user interface (the Gradio page calls it from worker threads, so every render holds a lock).
A preview is the low-resolution image of the frame (the ray grid's side, before super-resolution), enlarged by
pixel repetition to the full frame's side so that the page's image keeps its size; a full frame is exactly what
``aniportrait render`` writes for the same settings.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from aniportrait.api import Portrait, PreparedIdentity
from aniportrait.render import keyframes as kf
from aniportrait.viewer.controls import ViewControls

IDENTITY_CACHE_SIZE = 8  # prepared identities kept (seed, psi): a seed change prepares one, revisiting is free


@dataclass(frozen=True)
class Frame:
    """One rendered image for the page: ``image`` [S, S, 3] uint8, ``kind`` ``"full"`` or ``"preview"``."""

    image: np.ndarray
    kind: str
    milliseconds: float

    def status(self, seed: int, psi: float) -> str:
        side = self.image.shape[0]
        return f"{self.kind} frame, {side}x{side}, seed {seed}, psi {psi:.2f}, {self.milliseconds:.0f} ms"


class ViewerSession:
    """Renders frames of a :class:`~aniportrait.api.Portrait` for the viewer."""

    def __init__(self, portrait: Portrait, cache_size: int = IDENTITY_CACHE_SIZE) -> None:
        self.portrait = portrait
        self._identities: OrderedDict[tuple[int, float], PreparedIdentity] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def identity(self, seed: int, psi: float) -> PreparedIdentity:
        """The prepared identity of (seed, psi), from the cache when it is there (validated by the API)."""
        key = (int(seed), float(psi))
        with self._lock:
            if key in self._identities:
                self._identities.move_to_end(key)
                return self._identities[key]
            person = self.portrait.identity(*key)
            self._identities[key] = person
            while len(self._identities) > self._cache_size:
                self._identities.popitem(last=False)
            return person

    def frame(self, seed: int, psi: float, controls: ViewControls, *, preview: bool = False) -> Frame:
        """The frame of these settings: the full frame, or the enlarged low-resolution preview."""
        start = time.perf_counter()
        person = self.identity(seed, psi)
        with self._lock:
            image = self.portrait.render(
                person,
                camera=controls.camera(),
                pose=controls.pose(),
                expression=controls.expression(),
                output="numpy",
                output_size="lr" if preview else "hr",
            )[0]
        if preview:
            factor = self.portrait.resolution // image.shape[0]
            image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
        return Frame(image, "preview" if preview else "full", 1000.0 * (time.perf_counter() - start))

    def trajectory(
        self, seed: int, psi: float, name: str, n_interval: int | None = None
    ) -> Iterator[tuple[int, int, Frame]]:
        """Full frames of a built-in trajectory (``aniportrait render --trajectory``): (index, count, frame), with
        the checkpoint's frames per keyframe unless ``n_interval`` is given."""
        n_interval = self.portrait.rendering.n_interval if n_interval is None else n_interval
        keys = kf.interpolate(kf.builtin(name), n_interval)
        person = self.identity(seed, psi)
        for i in range(len(keys)):
            start = time.perf_counter()
            with self._lock:
                image = self.portrait.render(
                    person,
                    camera=keys.camera[i],
                    pose=keys.pose[i],
                    expression=keys.expression[i],
                    output="numpy",
                )[0]
            yield i, len(keys), Frame(image, "full", 1000.0 * (time.perf_counter() - start))
