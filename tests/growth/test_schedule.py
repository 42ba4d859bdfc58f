"""The default growth schedule."""

from momentssn.growth.schedule import growth_sizes


def test_growth_sizes_schedule():
    assert growth_sizes(3, 3) == [(1, 1), (2, 2), (3, 3)]
    assert growth_sizes(4, 2) == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert growth_sizes(1, 3) == [(1, 1), (1, 3)]
    for ne, ni in ((5, 3), (2, 7), (50, 50)):
        s = growth_sizes(ne, ni)
        assert s[0] == (1, 1) and s[-1] == (ne, ni)
        assert all(b[0] >= a[0] and b[1] >= a[1] and b != a for a, b in zip(s, s[1:]))

