"""Temporal smoothing of per-face arrays with the One-Euro filter.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a first-order
low-pass filter whose cutoff frequency rises with the signal's speed: at rest
it smooths hard (little jitter), when the signal moves it follows closely
(little lag). Per element of an array and per frame::

    speed   = |low-pass(d_cutoff)((x_t - x̂_{t-1}) / dt)| / scale
    cutoff  = min_cutoff + beta * speed
    x̂_t    = x̂_{t-1} + alpha(cutoff, dt) * (x_t - x̂_{t-1}),
    alpha   = 1 / (1 + 1 / (2 pi cutoff dt))

``scale`` makes the speed unit-free: for face points it is the face's size in
pixels (the pose scale, i.e. the outer-eye-corner distance), so ``beta`` means
the same on a 100-pixel face and on a 1000-pixel one, and speed is in
"eye distances per second". The derivative is taken against the previous
*smoothed* value, as in the paper's reference code: while the output lags
behind a moving input the measured speed grows, the cutoff rises and the
filter catches up.

Everything is vectorised over whole arrays (no per-point Python loops).
:class:`FaceSmoother` keeps one filter per *named* array of one face (a dict of
arrays), so a new per-face quantity is smoothed by adding its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Defaults chosen by measurement (tools/measure_tracking.py; README "Video
# tracking and smoothing"): on the sample video and the real talking-head
# clips of ../shared/data/videos they cut the 68 landmarks' jitter where the
# head is still to 0.26-0.38 of the raw jitter, with the pose lagging 0.25-0.75
# frame behind the raw pose on head turns. Lower min_cutoff or beta smooth
# more and lag more (0.5 / 6: lag up to 0.9 frame); higher ones the reverse.
DEFAULT_MIN_CUTOFF = 0.5  # Hz: cutoff at rest (lower = smoother, more lag when starting to move)
DEFAULT_BETA = 8.0        # Hz per (eye distance / s): how fast the cutoff rises with speed
DEFAULT_D_CUTOFF = 1.0    # Hz: cutoff of the low-pass on the speed estimate


@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of one One-Euro filter.

    Attributes
    ----------
    min_cutoff : float
        Cutoff frequency in Hz when the signal is still. Lower = less jitter,
        more lag at the start of a movement.
    beta : float
        Cutoff increase in Hz per unit of (scaled) speed, i.e. per eye distance
        per second for face points. Higher = less lag while moving.
    d_cutoff : float
        Cutoff in Hz of the low-pass filter applied to the speed estimate.
    """

    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    d_cutoff: float = DEFAULT_D_CUTOFF

    def __post_init__(self):
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0):
            raise ValueError(f"One-Euro parameters need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {self}")


def _alpha(cutoff, dt: float):
    """Smoothing factor of a first-order low-pass filter (scalar or array ``cutoff``)."""
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


class OneEuroFilter:
    """One-Euro filter over an array of any (fixed) shape, element by element.

    Parameters
    ----------
    params : OneEuroParams
        Cutoffs and speed coefficient.
    default_dt : float
        Frame interval in seconds used when timestamps do not increase.
    native : bool
        Run each step in C (:class:`service.kernels.NativeOneEuro`, default) or in
        numpy (the reference the tests compare with; they agree to ~1e-12 relative).

    Notes
    -----
    The first value after construction or :meth:`reset` passes through
    unchanged. A non-increasing timestamp (a repeated frame time) is treated
    as one nominal frame interval ``default_dt``.
    """

    def __init__(self, params: OneEuroParams = OneEuroParams(), default_dt: float = 1.0 / 30.0,
                 native: bool = True):
        self.params = params
        self.default_dt = float(default_dt)
        self.native = native
        self._kernel = None  # NativeOneEuro, made on first use (nothing loads at construction)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next value passes through unchanged."""
        self._x = None      # last smoothed value
        self._dx = None     # last smoothed derivative (raw units per second)
        self._t = None
        self._finite = True  # every value of _x is finite

    @property
    def initialized(self) -> bool:
        return self._x is not None

    def __call__(self, x: np.ndarray, t: float, scale=1.0) -> np.ndarray:
        """Smooth one new value.

        Parameters
        ----------
        x : ndarray
            The new raw value (same shape every call until :meth:`reset`).
        t : float
            Its time in seconds.
        scale : float or ndarray
            Divides the speed before it sets the cutoff (broadcast against ``x``).

        Returns
        -------
        ndarray
            The smoothed value (float64, shape of ``x``); a new array.
        """
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape or not self._finite:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            self._finite = bool(np.isfinite(x).all())
            return x.copy()
        dt = float(t) - self._t
        if not dt > 0:
            dt = self.default_dt
        p = self.params
        self._t = float(t)
        if self.native:  # the same step in C (service.kernels.NativeOneEuro): one call, not ~15
            if self._kernel is None:
                from .kernels import NativeOneEuro

                self._kernel = NativeOneEuro()
            scale = np.asarray(scale, np.float64)
            if scale.shape != x.shape or not scale.flags.c_contiguous:
                scale = np.ascontiguousarray(np.broadcast_to(scale, x.shape))
            self._finite = self._kernel.step(np.ascontiguousarray(x), scale, dt, p.min_cutoff, p.beta, p.d_cutoff,
                                             self._x, self._dx)
            return self._x.copy()
        dx = (x - self._x) / dt
        self._dx += _alpha(p.d_cutoff, dt) * (dx - self._dx)
        cutoff = p.min_cutoff + p.beta * np.abs(self._dx) / scale
        self._x += _alpha(cutoff, dt) * (x - self._x)
        self._finite = bool(np.isfinite(self._x).all())
        return self._x.copy()


@dataclass(frozen=True)
class SmoothingConfig:
    """How :class:`FaceSmoother` smooths; ``enabled=False`` passes values through.

    Attributes
    ----------
    enabled : bool
        Smoothing on or off.
    params : OneEuroParams
        Parameters of every named array without an override.
    overrides : dict of str to OneEuroParams
        Per-name parameters (e.g. ``{"params62": OneEuroParams(0.5, 1.0)}``).
    """

    enabled: bool = True
    params: OneEuroParams = OneEuroParams()
    overrides: dict = field(default_factory=dict)

    def for_name(self, name: str) -> OneEuroParams:
        return self.overrides.get(name, self.params)


class FaceSmoother:
    """One-Euro filtering of the named arrays of one tracked face.

    The set of smoothed quantities is whatever the caller passes (today
    ``points468``, ``landmarks68`` and ``params62``); a new one is smoothed by
    passing it under a new name. Names that share parameters are filtered
    together as one flat array (one filter, fewer numpy calls per frame), each
    element with its own cutoff as always; if the set of names or their
    shapes changes, that group starts afresh.

    Parameters
    ----------
    config : SmoothingConfig
        Parameters; ``config.enabled=False`` makes :meth:`__call__` an identity.
    default_dt : float
        Frame interval in seconds used when timestamps do not increase.
    """

    def __init__(self, config: SmoothingConfig = SmoothingConfig(), default_dt: float = 1.0 / 30.0):
        self.config = config
        self.default_dt = default_dt
        self._groups: dict[tuple, list] = {}   # names -> [(params, names sharing them)]
        # per group (names and shapes): its filter, each name's (start, stop) in the flat
        # arrays, and the flat value and speed-scale buffers
        self._layouts: dict[tuple, tuple] = {}

    def reset(self) -> None:
        """Forget every array's past (new identity, re-detection jump, camera cut)."""
        for f, *_ in self._layouts.values():
            f.reset()

    def __call__(self, values: dict, t: float, scales: dict | None = None) -> dict:
        """Smooth a dict of named arrays observed at time ``t`` (seconds).

        Parameters
        ----------
        values : dict of str to ndarray
            Raw arrays of this frame.
        t : float
            Time of the frame in seconds.
        scales : dict of str to float or ndarray, optional
            Speed normaliser per name, broadcast against its array (default 1).

        Returns
        -------
        dict of str to ndarray
            Smoothed arrays (float64), same names and shapes (the inputs
            themselves when smoothing is off).
        """
        if not self.config.enabled:
            return dict(values)
        scales = scales or {}
        # Which names share a filter depends only on the names: worked out once per set of names
        # (hashing the parameter dataclasses every frame was a noticeable share of the cost).
        groups = self._groups.get(tuple(values))
        if groups is None:
            by_params: dict[OneEuroParams, list[str]] = {}
            for name in values:
                by_params.setdefault(self.config.for_name(name), []).append(name)
            groups = self._groups[tuple(values)] = list(by_params.items())
        out = {}
        for params, names in groups:
            arrays = [np.asarray(values[name]) for name in names]
            key = tuple((name, a.shape) for name, a in zip(names, arrays))
            layout = self._layouts.get(key)
            if layout is None:
                ends = np.cumsum([a.size for a in arrays]).tolist()
                layout = self._layouts[key] = (OneEuroFilter(params, self.default_dt),
                                               list(zip([0] + ends[:-1], ends)), np.empty(ends[-1]),
                                               np.empty(ends[-1]))
            f, bounds, flat, scale = layout
            # The group's values and speed scales side by side in one flat float64 array each,
            # written slice by slice into buffers kept between frames (the filter copies what it
            # keeps): fewer numpy calls than concatenating broadcast copies.
            for (start, stop), name, a in zip(bounds, names, arrays):
                flat[start:stop] = a.reshape(-1)
                scale[start:stop].reshape(a.shape)[...] = scales.get(name, 1.0)  # broadcast by numpy
            smoothed = f(flat, t, scale)
            for (start, stop), name, a in zip(bounds, names, arrays):
                out[name] = smoothed[start:stop].reshape(a.shape)
        return out
