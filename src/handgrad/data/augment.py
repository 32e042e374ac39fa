"""Data augmentation computed on the fly, one minibatch at a time, for ``hg.fit(..., augment=...)``.

An augmentation is a callable ``(Xb, rng) -> array`` of the same shape and
dtype: ``fit`` passes each training minibatch (rows of flattened images) and
a generator seeded from the run's seed and the epoch, so a run is
reproducible and a resumed one exact.  Nothing here has a gradient: the
network sees the transformed rows as its input data.
"""

import numpy as np

from handgrad.errors import HandgradError


class ShiftImages:
    """Move each image by a random whole number of pixels, up to ``max_shift`` in each direction.

    ``image_shape`` is (height, width) of the flattened rows.  Each image of a
    batch gets its own shift ``(dy, dx)``, uniform on ``{−s, …, s}²``; pixels
    moved in from outside the frame are ``fill`` (0: the background of
    MNIST-style images).  The identity is one of the (2s + 1)² outcomes.
    """

    def __init__(self, image_shape, max_shift=2, fill=0.0):
        height, width = (int(v) for v in image_shape)
        if height < 1 or width < 1:
            raise HandgradError(f"image_shape must be two positive sizes, got {image_shape!r}")
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or not \
                0 <= max_shift < min(height, width):
            raise HandgradError(f"max_shift must be a whole number of pixels in 0..{min(height, width) - 1}, "
                                f"got {max_shift!r}")
        self.image_shape, self.max_shift, self.fill = (height, width), int(max_shift), float(fill)
        self._padded = None

    def __call__(self, Xb, rng):
        (height, width), s = self.image_shape, self.max_shift
        n = Xb.shape[0]
        if Xb.ndim != 2 or Xb.shape[1] != height * width:
            raise HandgradError(f"ShiftImages{self.image_shape} got rows of {Xb.shape[1:]} values; "
                                f"it shifts images of {height}x{width} = {height * width} pixels")
        padded = self._frame(n, Xb.dtype)
        padded[:, s:s + height, s:s + width] = Xb.reshape(n, height, width)
        dy, dx = rng.integers(-s, s + 1, size=(2, n))
        # Image r moves by (dy_r, dx_r): output pixel (i, j) reads padded pixel
        # (i + s − dy_r, j + s − dx_r), a window of the padded frame.  Images
        # are copied in groups that share a shift, one strided window per
        # group: at most (2s + 1)² copies a batch, instead of an index per pixel.
        out = np.empty((n, height, width), dtype=Xb.dtype)
        code = (dy + s) * (2 * s + 1) + (dx + s)
        order = np.argsort(code, kind="stable")
        starts = np.searchsorted(code[order], np.arange((2 * s + 1) ** 2 + 1))
        for k in range((2 * s + 1) ** 2):
            rows = order[starts[k]:starts[k + 1]]
            if rows.size:
                top, left = 2 * s - k // (2 * s + 1), 2 * s - k % (2 * s + 1)     # s − dy, s − dx
                out[rows] = padded[rows, top:top + height, left:left + width]
        return out.reshape(n, height * width)

    def _frame(self, n, dtype):
        """A reused (n, height + 2s, width + 2s) buffer whose border holds ``fill``."""
        (height, width), s = self.image_shape, self.max_shift
        frame = self._padded
        if frame is None or frame.dtype != dtype or frame.shape[0] < n:
            frame = self._padded = np.full((n, height + 2 * s, width + 2 * s), self.fill, dtype=dtype)
        return frame[:n]

    def __repr__(self):
        return f"ShiftImages({self.image_shape}, max_shift={self.max_shift})"


def shift_images(image_shape, max_shift=2, fill=0.0):
    """An augmentation that shifts each image by up to ``max_shift`` pixels (:class:`ShiftImages`)."""
    return ShiftImages(image_shape, max_shift, fill)


class FlipImages:
    """Mirror each image left to right with probability ``p`` (a fresh draw per image).

    ``image_shape`` is (height, width) of the flattened rows; a flipped
    image's pixel (i, j) is the original's (i, width − 1 − j).  Worth it
    where a class looks the same in a mirror (Fashion-MNIST's clothes), not
    where it does not (digits).
    """

    def __init__(self, image_shape, p=0.5):
        height, width = (int(v) for v in image_shape)
        if height < 1 or width < 1:
            raise HandgradError(f"image_shape must be two positive sizes, got {image_shape!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
            raise HandgradError(f"p must be a probability in [0, 1], got {p!r}")
        self.image_shape, self.p = (height, width), float(p)

    def __call__(self, Xb, rng):
        height, width = self.image_shape
        n = Xb.shape[0]
        if Xb.ndim != 2 or Xb.shape[1] != height * width:
            raise HandgradError(f"FlipImages{self.image_shape} got rows of {Xb.shape[1:]} values; "
                                f"it flips images of {height}x{width} = {height * width} pixels")
        flip = rng.random(n) < self.p
        out = Xb.copy()
        images = out.reshape(n, height, width)
        images[flip] = Xb.reshape(n, height, width)[flip, :, ::-1]
        return out

    def __repr__(self):
        return f"FlipImages({self.image_shape}, p={self.p:g})"


def flip_images(image_shape, p=0.5):
    """An augmentation that mirrors each image left to right with probability ``p`` (:class:`FlipImages`)."""
    return FlipImages(image_shape, p)


class Compose:
    """Several augmentations applied in order to each batch, all drawing from the one generator."""

    def __init__(self, *augmentations):
        self.augmentations = augmentations

    def __call__(self, Xb, rng):
        for augmentation in self.augmentations:
            Xb = augmentation(Xb, rng)
        return Xb

    def __repr__(self):
        return f"Compose({', '.join(map(repr, self.augmentations))})"


def image_augmentation(image_shape, shift=0, flip=False):
    """``handgrad train``'s augmentation: mirror images (``flip``), then shift them by up to ``shift`` pixels.

    None when neither is asked for; one augmentation alone when only one is,
    so a run with shifts only draws exactly as :class:`ShiftImages` does.
    """
    parts = ([FlipImages(image_shape)] if flip else []) + ([ShiftImages(image_shape, shift)] if shift else [])
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Compose(*parts)
