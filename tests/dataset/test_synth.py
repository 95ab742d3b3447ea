"""The generator follows the book's rules exactly (README, "The rules"), checked on fixed seeds."""
import numpy as np
import pytest

from pipeline.dataset.synth import (
    BitRenderer,
    PathMaskRenderer,
    SequenceSpec,
    bit_renderer,
    generate,
    render,
    render_bits,
    trajectories,
    walk_rows,
)


def sequences(n=4000, size=12, seed=0, **kw):
    return generate(np.random.default_rng(seed), n, SequenceSpec(size, **kw))


def test_shapes_and_dtypes():
    s = sequences(n=5, size=6)
    assert s.frames.shape == (5, 6, 6, 6) and s.frames.dtype == np.uint8
    assert s.labels.shape == (5,) and s.labels.dtype == np.uint8
    assert s.rows.shape == (5, 6) and s.rows.dtype == np.int16
    assert set(np.unique(s.frames)) <= {0, 1}


def test_trail_frame_t_has_t_plus_one_pixels_and_grows():
    s = sequences(n=300, size=10)
    counts = s.frames.reshape(300, 10, -1).sum(-1)
    assert (counts == np.arange(1, 11)).all()
    # frame t = frame t-1 plus one pixel
    assert (s.frames[:, 1:] >= s.frames[:, :-1]).all()


def test_columns_follow_direction():
    s = sequences(n=500, size=9)
    right = s.labels == 1
    assert (s.cols[right] == np.arange(9)).all()
    assert (s.cols[~right] == np.arange(9)[::-1]).all()
    # the pixel lit at step t sits at (rows[t], cols[t])
    n, t = np.nonzero(np.ones((500, 9), bool))
    assert (s.frames[n, t, s.rows[n, t], s.cols[n, t]] == 1).all()


def test_row_steps_in_bounds_and_small():
    s = sequences(n=2000, size=7)
    assert s.rows.min() >= 0 and s.rows.max() <= 6
    assert np.isin(np.diff(s.rows.astype(int), axis=1), (-1, 0, 1)).all()


def test_interior_steps_uniform_over_three():
    rows = walk_rows(np.random.default_rng(1), 20000, 30).astype(int)
    prev, step = rows[:, :-1], np.diff(rows, axis=1)
    interior = (prev > 0) & (prev < 29)
    freq = np.array([(step[interior] == d).mean() for d in (-1, 0, 1)])
    assert np.allclose(freq, 1 / 3, atol=0.01), freq


@pytest.mark.parametrize("size", [2, 3, 9])
def test_walk_rows_draws_as_documented(size):
    """The vectorized walk equals a plain per-sample loop over the same draws: a start row, then per step
    option floor(3u) of (r-1, r, r+1), or floor(2u) of the two in-bounds rows at an edge. A dataset's bytes
    depend on this order."""
    n = 200
    got = walk_rows(np.random.default_rng(size), n, size)
    rng = np.random.default_rng(size)
    start, u = rng.integers(0, size, n), rng.random((n, size - 1))
    for k in range(n):
        r = [int(start[k])]
        for i in range(size - 1):
            options = [x for x in (r[-1] - 1, r[-1], r[-1] + 1) if 0 <= x < size]
            r.append(options[int(u[k, i] * len(options))])
        assert got[k].tolist() == r


@pytest.mark.parametrize("edge,allowed", [(0, (0, 1)), (5, (-1, 0))])
def test_edge_rule_uniform_over_two_in_bounds_rows(edge, allowed):
    rows = walk_rows(np.random.default_rng(2), 30000, 6).astype(int)
    prev, step = rows[:, :-1], np.diff(rows, axis=1)
    at_edge = step[prev == edge]
    assert at_edge.size > 5000
    assert set(np.unique(at_edge)) == set(allowed)
    assert abs((at_edge == allowed[0]).mean() - 0.5) < 0.02


def test_start_row_uniform_and_labels_balanced():
    s = sequences(n=40000, size=10, seed=3)
    counts = np.bincount(s.rows[:, 0], minlength=10)
    expected = 40000 / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001
    assert abs(s.labels.mean() - 0.5) < 0.01


def test_same_seed_same_bytes():
    a, b = sequences(n=50, seed=11), sequences(n=50, seed=11)
    assert a.frames.tobytes() == b.frames.tobytes() and (a.labels == b.labels).all()


def test_dot_variant_lights_only_the_newest_pixel():
    s = sequences(n=200, size=8, variant="dot")
    assert (s.frames.reshape(200, 8, -1).sum(-1) == 1).all()
    n, t = np.nonzero(np.ones((200, 8), bool))
    assert (s.frames[n, t, s.rows[n, t], s.cols[n, t]] == 1).all()


def test_square_variant_draws_a_clipped_block_around_the_path():
    s = sequences(n=200, size=10, variant="square", square=3)
    for i in range(20):
        for t in range(10):
            r, c = int(s.rows[i, t]), int(s.cols[i, t])
            block = np.zeros((10, 10), np.uint8)
            block[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = 1
            assert (s.frames[i, t] == block).all()


def test_wrap_starts_anywhere_and_hides_direction_in_single_frames():
    s = sequences(n=20000, size=10, wrap=True, seed=5)
    assert set(np.unique(s.cols[:, 0])) == set(range(10))
    step = (s.cols[:, 1].astype(int) - s.cols[:, 0]) % 10
    assert ((step == 1) == (s.labels == 1)).all()
    # frame 0 is a single pixel in a uniform column whatever the direction
    for label in (0, 1):
        cols = s.cols[s.labels == label, 0]
        assert np.abs(np.bincount(cols, minlength=10) / cols.size - 0.1).max() < 0.015


@pytest.mark.parametrize("kw,match", [(dict(size=1), "size"), (dict(size=10**6), "size"),
                                      (dict(variant="circle"), "variant"), (dict(square=0), "square")])
def test_bad_specs_name_the_value(kw, match):
    with pytest.raises(ValueError, match=match):
        SequenceSpec(**kw)


@pytest.mark.parametrize("variant,square", [("trail", 1), ("dot", 1), ("square", 3), ("square", 4)])
@pytest.mark.parametrize("size", [2, 3, 4, 6, 7, 8, 10, 13, 16, 25, 50])
@pytest.mark.parametrize("wrap", [False, True])
def test_render_bits_equals_packed_frames(variant, square, size, wrap):
    """Every bit phase: odd sizes repeat offsets every 8 frames, sizes 2 mod 4 every 2, multiples of 4 never."""
    spec = SequenceSpec(size, variant, min(square, size), wrap)
    for n in (1, 3):
        _, rows, cols = trajectories(np.random.default_rng([size, n]), n, spec)
        expected = np.packbits(render(rows, cols, spec).reshape(-1))
        got = render_bits(rows, cols, spec)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("variant", ["trail", "dot"])
@pytest.mark.parametrize("size", [2, 4, 6, 10, 50])
def test_path_mask_renderer_equals_bit_renderer(variant, size):
    """Both frame groups (sizes 2 mod 4 pair frames, multiples of 4 do not); a shorter call after a longer one."""
    spec = SequenceSpec(size, variant, square=1)
    masks, bits = PathMaskRenderer(spec, 8), BitRenderer(spec, 8)
    _, rows, cols = trajectories(np.random.default_rng(size), 8, spec)
    for n in (8, 3, 1):
        expected = bits(rows[:n], cols[:n], zero_byte=True).copy()
        assert np.array_equal(masks(rows[:n], cols[:n], zero_byte=True), expected)


def test_bit_renderer_picks_path_masks_where_they_apply():
    assert isinstance(bit_renderer(SequenceSpec(50), 4), PathMaskRenderer)
    assert isinstance(bit_renderer(SequenceSpec(50, "dot"), 4), PathMaskRenderer)
    for spec in (SequenceSpec(51), SequenceSpec(50, wrap=True), SequenceSpec(50, "square")):
        assert isinstance(bit_renderer(spec, 4), BitRenderer)
        with pytest.raises(ValueError, match="even size"):
            PathMaskRenderer(spec, 4)
