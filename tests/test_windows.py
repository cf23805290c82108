"""bertkit.windows.split_windows: coverage, sizes, stride."""

import pytest

from bertkit.windows import split_windows


def test_examples():
    assert split_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert split_windows(11, 4, 3) == [(0, 4), (3, 7), (6, 10), (9, 11)]
    assert split_windows(12, 4, 4) == [(0, 4), (4, 8), (8, 12)]
    assert split_windows(4, 4, 1) == [(0, 4)]
    assert split_windows(3, 4, 2) == [(0, 3)]
    assert split_windows(0, 4, 2) == [(0, 0)]


@pytest.mark.parametrize("length", [1, 5, 17, 100, 513])
@pytest.mark.parametrize("max_tokens,stride", [(1, 1), (4, 2), (7, 3), (64, 64), (384, 128)])
def test_properties(length, max_tokens, stride):
    windows = split_windows(length, max_tokens, stride)
    assert windows[0][0] == 0 and windows[-1][1] == length
    covered = set()
    for start, end in windows:
        assert 0 <= start < end <= length and end - start <= max_tokens
        covered.update(range(start, end))
    assert covered == set(range(length))
    starts = [s for s, _ in windows]
    assert all(b - a == stride for a, b in zip(starts, starts[1:]))
    # no redundant window: all but the last are full-size, the last is the first to reach the end
    assert all(e - s == max_tokens for s, e in windows[:-1])
    assert all(e < length for _, e in windows[:-1])


@pytest.mark.parametrize("args", [(-1, 4, 2), (5, 0, 1), (5, 4, 0), (5, 4, 5), (5.0, 4, 2), (True, 4, 2)])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        split_windows(*args)
