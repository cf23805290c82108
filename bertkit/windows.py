"""Overlapping windows over a long sequence (long sentences in tagging, long passages in span extraction)."""

from __future__ import annotations

__all__ = ["split_windows"]


def split_windows(length: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` covering ``range(length)``, each at most ``max_tokens`` long.

    Starts are ``0, stride, 2*stride, ...`` (neighbours overlap by ``max_tokens - stride``); the last window is the
    first one that reaches ``length`` and is cut to end there, so it may be shorter. ``length <= max_tokens`` gives
    the single window ``[(0, length)]``; ``length == 0`` gives ``[(0, 0)]`` so every input has one window.
    ``stride`` must be in ``1..max_tokens`` (``stride == max_tokens`` means no overlap). Every position is covered,
    and each position's window with the most context on both sides can be chosen by the caller.

    >>> split_windows(10, 4, 3)
    [(0, 4), (3, 7), (6, 10)]
    >>> split_windows(11, 4, 3)
    [(0, 4), (3, 7), (6, 10), (9, 11)]
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= max_tokens:
        raise ValueError(f"stride must be an integer in 1..max_tokens ({max_tokens}), got {stride!r}")
    if length <= max_tokens:
        return [(0, length)]
    windows = []
    start = 0
    while True:
        end = min(start + max_tokens, length)
        windows.append((start, end))
        if end == length:
            return windows
        start += stride
