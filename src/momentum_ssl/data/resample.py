"""Resizing a crop that is enlarged along an axis, for the whole-image crop decoder
(data/loaders.py WholeImageCropDecoder).

FFCV's ``resize_crop`` is OpenCV's ``INTER_AREA``: a true area average when the crop shrinks
along both axes, but when it enlarges along one OpenCV falls back to a nearest-neighbour-like
map that only blends one output pixel at each source pixel's edge (OpenCV's docs: "when the
image is zoomed, it is similar to the INTER_NEAREST method"). The references resize smoothly:
torchvision's RandomResizedCrop bilinearly (antialiased), solo-learn's DALI pipeline bicubically.
So where a crop enlarges along either axis, the decoder resizes it with :func:`crop_resize`:
separable, bilinear along an enlarged axis (half-pixel centres, edge pixels repeated, as
OpenCV's ``INTER_LINEAR`` and torch's ``align_corners=False``), an area average along a shrunk
one (as ``INTER_AREA``). A crop shrunk along both axes keeps FFCV's ``resize_crop``.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight), each (n_out, taps): output pixel d along the axis is
    ``sum_k weight[d, k] * source[index[d, k]]``. Bilinear where ``n_out >= n_in``, the area
    average of the source interval [d, d + 1) * n_in / n_out where the axis shrinks."""
    scale = n_in / n_out
    enlarge = n_out >= n_in
    taps = 2 if enlarge else int(math.ceil(scale)) + 1
    index = np.zeros((n_out, taps), np.int64)
    weight = np.zeros((n_out, taps), np.float64)
    for d in range(n_out):
        if enlarge:
            centre = (d + 0.5) * scale - 0.5  # the output pixel's centre in source pixels
            first = math.floor(centre)
            fraction = centre - first
            index[d, 0] = min(max(first, 0), n_in - 1)
            index[d, 1] = min(max(first + 1, 0), n_in - 1)
            weight[d, 0], weight[d, 1] = 1.0 - fraction, fraction
        else:
            start, stop = d * scale, (d + 1) * scale
            first = math.floor(start)
            for k in range(taps):
                i = first + k
                overlap = min(i + 1.0, stop) - max(float(i), start)
                index[d, k] = min(i, n_in - 1)
                weight[d, k] = max(overlap, 0.0) / scale
    return index, weight


@functools.cache
def crop_resize():
    """The compiled ``resize(image, top, bottom, left, right, out)``: the crop
    ``image[top:bottom, left:right]`` ((H, W, 3) uint8) resized into ``out`` ((side, side, 3)
    uint8) by :func:`axis_weights` along each axis (rows, then columns), in doubles, rounded
    half up. Compiled by numba without fastmath, lazily (importing this module does not import
    numba)."""
    from numba import njit

    weights = njit(axis_weights)

    @njit
    def resize(image, top, bottom, left, right, out):
        rows, cols = out.shape[0], out.shape[1]
        row_index, row_weight = weights(bottom - top, rows)
        col_index, col_weight = weights(right - left, cols)
        across = np.zeros((bottom - top, cols * 3))  # each source row resized along columns
        for y in range(bottom - top):
            for x in range(cols):
                for k in range(col_index.shape[1]):
                    w = col_weight[x, k]
                    if w != 0.0:
                        for c in range(3):
                            across[y, 3 * x + c] += w * image[top + y, left + col_index[x, k], c]
        flat = out.reshape(rows, cols * 3)
        value = np.empty(cols * 3)
        for y in range(rows):  # then down the columns, a whole row at a time (vectorised)
            value[:] = 0.0
            for k in range(row_index.shape[1]):
                w, source = row_weight[y, k], across[row_index[y, k]]
                for j in range(cols * 3):
                    value[j] += w * source[j]
            for j in range(cols * 3):
                flat[y, j] = np.uint8(min(max(math.floor(value[j] + 0.5), 0.0), 255.0))

    return resize
