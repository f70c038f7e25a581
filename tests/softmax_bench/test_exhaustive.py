"""softmax_bench.exhaustive: the domain, the reference carried by the symmetries, the per-output
classification against the exact values, the resumable results file, the table."""
import json

import ml_dtypes
import numpy as np
import pytest

from softmax_bench import exhaustive, reference
from softmax_bench.formats import exact_ulp_error, format_of

FLOAT8 = ("float8_e4m3fn", "float8_e5m2")


def sweep(dtype="float8_e5m2", function="softmax", **kw):
    kw.setdefault("implementations", exhaustive.implementation_names(dtype, function))
    return exhaustive.Sweep(dtype, function, **kw)


def all_rows(s):
    return np.concatenate([exhaustive.chunk_rows(s, c) for c in s.chunks()])


@pytest.mark.parametrize("dtype", FLOAT8 + ("float16",))
def test_pairs_cover_every_row_once(dtype):
    s = sweep(dtype)
    assert len(s.chunks()) == 1056 and s.rows == 4**s.bits
    if dtype == "float16":  # 2**32 rows: count them, and check the blocks of a few chunks
        size = 2**16 // exhaustive.BLOCKS
        assert sum(len(exhaustive._orbit(*divmod(c, exhaustive.BLOCKS))) for c in s.chunks()) * size**2 == 2**32
        return
    bits = all_rows(s).view(np.uint8).astype(np.int64)
    keys = bits[:, 0] * 256 + bits[:, 1]
    assert np.array_equal(np.sort(keys), np.arange(2**16))


def test_triples_cover_their_window():
    s = sweep("float16", domain="triples", window=(0x3c00, 20))
    rows = all_rows(s)
    assert rows.shape == (20**3, 3) == (s.rows, 3)
    assert len(np.unique(rows.view(np.uint16), axis=0)) == 20**3
    assert rows.view(np.uint16).min() == 0x3c00 and rows.view(np.uint16).max() == 0x3c00 + 19


@pytest.mark.parametrize("function", exhaustive.FUNCTIONS)
@pytest.mark.parametrize("dtype", FLOAT8)
def test_reference_carried_by_the_symmetries_equals_the_direct_one(dtype, function):
    s = sweep(dtype, function)
    for c in s.chunks():
        rows = exhaustive.chunk_rows(s, c)
        carried = exhaustive.chunk_reference(s, c, rows)
        direct = exhaustive._reference_direct(function, rows)
        r, r_direct = carried[0], direct[0]
        assert np.array_equal(r, r_direct, equal_nan=True)
        assert np.array_equal(np.signbit(r), np.signbit(r_direct))  # signed zeros too
        # both enclosures hold the exact value
        hi, lo = reference.exact(function, rows)
        for enc_lo, enc_hi in (carried[1:], direct[1:]):
            finite = np.isfinite(hi)
            assert np.all(enc_lo[finite] <= hi[finite]) and np.all(hi[finite] <= enc_hi[finite])


def exact_verdicts(s, rows, y):
    """Correctly rounded, faithful and the error per row from reference.exact's double-doubles
    alone (the definition, output by output)."""
    fmt = s.format
    r = getattr(reference, s.function)(rows).astype(np.float64)
    hi, lo = reference.exact(s.function, rows)
    c = y.astype(np.float64)
    err = exact_ulp_error(y, hi, lo, r.astype(rows.dtype)).max(axis=1)
    same = (c == r) | (np.isnan(c) & np.isnan(r))
    side = np.sign((hi - r) + lo)
    faithful = same.copy()
    for i, j in zip(*np.nonzero(~same)):
        faithful[i, j] = (np.isfinite(r[i, j]) and np.isfinite(c[i, j]) and side[i, j] != 0
                          and c[i, j] == exhaustive.neighbour(r[i, j], side[i, j] > 0, fmt.precision, fmt.emin))
    return same.all(axis=1), faithful.all(axis=1), err


@pytest.mark.parametrize("function", exhaustive.FUNCTIONS)
@pytest.mark.parametrize("dtype,window", [("float8_e4m3fn", None), ("float8_e5m2", None),
                                          ("float16", (0x3bf0, 24)), ("bfloat16", (0x3f70, 24))])
def test_every_implementation_measured_as_the_exact_values_say(dtype, window, function):
    s = sweep(dtype, function, domain="triples" if window else "pairs", window=window)
    rows = all_rows(s)
    r, lo, hi = exhaustive._reference_direct(function, rows)
    for name in s.implementations:
        y = np.asarray(exhaustive._callable(name, function)(rows)).astype(rows.dtype)
        got = exhaustive.measure(s, rows, y, r, lo, hi)
        cr, faithful, err = exact_verdicts(s, rows, y)
        assert got["rows"] == len(rows)
        assert got["correctly_rounded"] == cr.sum(), name
        assert got["faithful"] == faithful.sum(), name
        c, ref = y.astype(np.float64), r
        assert got["nan_rows"] == (np.isnan(c) & ~np.isnan(ref)).any(axis=1).sum()
        assert got["missed_nan_rows"] == (~np.isnan(c) & np.isnan(ref)).any(axis=1).sum()
        assert got["inf_rows"] == (np.isinf(c) & np.isfinite(ref)).any(axis=1).sum()
        assert got["zero_rows"] == ((c == 0) & (ref != 0) & np.isfinite(ref)).any(axis=1).sum()
        # the error is an upper bound within 2**-38 of the exact-value error (enclosures of
        # a few float64 ULPs: about 2**-40 of a 16-bit ULP)
        finite = err[np.isfinite(err)]
        assert got["max_error"] >= finite.max() if np.all(np.isfinite(err)) else got["max_error"] == np.inf
        if got["worst"]:
            assert got["worst"][0]["error"] == pytest.approx(finite.max(), abs=2.0**-38)
        for w in got["worst"]:
            assert w["output"] == pytest.approx(y[_index(rows, w)].astype(float).tolist(), nan_ok=True)


def _index(rows, info):
    bits = rows.view(np.dtype(f"u{rows.dtype.itemsize}"))
    want = [int(b, 16) for b in info["bits"]]
    return int(np.flatnonzero((bits == want).all(axis=1))[0])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"] + list(FLOAT8))
def test_neighbour_is_the_next_number_of_the_format(dtype):
    fmt = format_of(dtype)
    values = fmt.all_values()
    finite = values[np.isfinite(values.astype(np.float64))].astype(np.float64)
    ordered = np.unique(finite)  # -0 and +0 as one
    for a, b in zip(ordered[:-1], ordered[1:]):
        assert exhaustive.neighbour(a, True, fmt.precision, fmt.emin) == b
        assert exhaustive.neighbour(b, False, fmt.precision, fmt.emin) == a


def test_results_resume_after_an_interrupt_and_refuse_other_files(tmp_path, monkeypatch):
    """An interrupt inside a chunk keeps the finished chunks, never half of one (a resumed sweep
    would count it twice); the resumed totals equal an uninterrupted run's."""
    s = sweep(implementations=("softmax/shifted/float8_e5m2@float32", "numpy"))
    whole = exhaustive.run(s, None, workers=1, progress=False)
    path = tmp_path / "e5m2.json"
    calls = {"n": 0}
    real = exhaustive.summarise

    def interrupted(total, part):
        calls["n"] += 1
        if calls["n"] == 302:  # between the two implementations of the 151st chunk
            raise KeyboardInterrupt
        return real(total, part)

    monkeypatch.setattr(exhaustive, "summarise", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exhaustive.run(s, path, workers=1, progress=False)
    partial = json.loads(path.read_text())
    assert len(partial["done"]) == 150
    monkeypatch.setattr(exhaustive, "summarise", real)
    with pytest.raises(exhaustive.ExhaustiveError, match="exists"):
        exhaustive.run(s, path, workers=1, progress=False)
    resumed = exhaustive.run(s, path, workers=1, resume=True, progress=False)
    assert resumed["totals"] == whole["totals"]
    assert len(resumed["meta"]["runs"]) == 2
    assert resumed["timing"]["chunks"] == len(s.chunks())
    assert sum(run["chunks"] for run in resumed["meta"]["runs"]) == len(s.chunks())
    other = sweep(implementations=("numpy",))
    with pytest.raises(exhaustive.ExhaustiveError, match="other settings"):
        exhaustive.run(other, path, workers=1, resume=True, progress=False)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"records": []}')
    with pytest.raises(exhaustive.ExhaustiveError, match="not an exhaustive-sweep JSON"):
        exhaustive.run(s, foreign, workers=1, resume=True, progress=False)
    assert foreign.read_text() == '{"records": []}'
    table = exhaustive.markdown(resumed)
    assert "| numpy |" in table and "every pair of float8_e5m2 values (65,536 rows of two)" in table
    assert "correctly rounded on every row: `softmax/shifted/float8_e5m2@float32`" in table


def test_an_implementation_that_raises_is_counted_failed(monkeypatch):
    s = sweep(implementations=("numpy", "softmax/shifted/float8_e5m2@float32"))
    monkeypatch.setitem(exhaustive._CALLABLES, ("numpy", "softmax"), lambda x: 1 / 0)
    part = exhaustive.run_chunk(s, s.chunks()[0])
    totals = part["totals"]
    assert set(part["seconds"]) == {"reference", *s.implementations}
    assert totals["numpy"]["failed_rows"] > 0 and totals["numpy"]["rows"] == 0
    assert "ZeroDivisionError" in totals["numpy"]["failures"]["error"]
    assert totals["softmax/shifted/float8_e5m2@float32"]["rows"] > 0


@pytest.mark.parametrize("bad", [dict(dtype="float32"), dict(function="logsumexp"),
                                 dict(domain="triples"), dict(domain="triples", window=(65530, 10)),
                                 dict(window=(0, 4)), dict(implementations=())])
def test_settings_that_cannot_run_are_refused(bad):
    kw = dict(dtype="float16", function="softmax", implementations=("numpy",))
    kw.update(bad)
    with pytest.raises(ValueError):
        exhaustive.Sweep(**kw).check()


def test_bfloat16_blocks_hold_its_values():
    values = format_of("bfloat16").all_values()
    assert values.dtype == ml_dtypes.bfloat16
    assert np.array_equal(exhaustive._block(values, exhaustive.BLOCKS // 2).view(np.uint16)[:2],
                          [0x8000, 0x8001])  # the sign bit starts the second half


def test_a_second_sweep_on_the_same_file_refuses(tmp_path):
    from softmax_bench.results_io import hold_lock

    path = tmp_path / "s.json"
    held = hold_lock(path, RuntimeError, "test")
    try:
        with pytest.raises(exhaustive.ExhaustiveError, match="another softmax-bench exhaustive is writing"):
            exhaustive.run(sweep(implementations=("numpy",)), path, workers=1, progress=False)
    finally:
        held.release()
    assert not path.exists()


def measure_made_up(dtype, function, row, outputs):
    """measure() on one row and outputs of our choosing (the format's values)."""
    s = sweep(dtype, function, implementations=("numpy",))
    dt = format_of(dtype).dtype
    rows = np.array([row], dtype=np.float64).astype(dt)
    r, lo, hi = exhaustive._reference_direct(function, rows)
    y = np.array([outputs], dtype=np.float64).astype(dt)
    return exhaustive.measure(s, rows, y, r, lo, hi), r[0]


@pytest.mark.parametrize("dtype,function,row,outputs,faithful,error", [
    # the exact values are 1 - e^-1024 and e^-1024: 1 and 0 in double-doubles, yet on one side
    ("float8_e5m2", "softmax", (0.0, -1024.0), (0.875, 0.0), 1, 1.0),
    ("float8_e5m2", "softmax", (0.0, -1024.0), (1.0, 2.0**-16), 1, 1.0),
    ("float8_e5m2", "softmax", (0.0, -1024.0), (1.25, 0.0), 0, 2.0),
    ("float8_e5m2", "softmax", (0.0, -1024.0), (1.0, -(2.0**-16)), 0, 1.0),
    ("float8_e5m2", "log_softmax", (0.0, -1024.0), (-(2.0**-16), -1024.0), 1, 1.0),
    ("float8_e5m2", "log_softmax", (0.0, -1024.0), (-0.0, -1280.0), 1, 1.0),
    ("float8_e5m2", "log_softmax", (0.0, -1024.0), (-0.0, -768.0), 0, 1.0),
    # a NaN output where the reference is NaN (-736 overflows e4m3fn) beside an undecided one
    ("float8_e4m3fn", "log_softmax", (288.0, -448.0), (-(2.0**-9), np.nan), 1, 1.0),
    # an entry alone: exactly 1 and 0, so the neighbours are not faithful
    ("float8_e5m2", "softmax", (3.0, -np.inf), (0.875, 0.0), 0, 0.5),
    ("float8_e5m2", "softmax", (3.0, -np.inf), (1.0, 2.0**-16), 0, 1.0),
])
def test_made_up_outputs_near_exactly_representable_values(dtype, function, row, outputs, faithful, error):
    got, r = measure_made_up(dtype, function, row, outputs)
    assert got["correctly_rounded"] == 0 and got["faithful"] == faithful, (got, r)
    assert got["max_error"] == pytest.approx(error, rel=1e-9, abs=1e-9), (got, r)


@pytest.mark.parametrize("outputs,faithful,error", [
    # output 0 held without a structural side (v = 0.5 - e^-1024 / 4: to the double-doubles),
    # output 2 held with one (v > 0 = r): the row goes to the double-doubles whole
    ((0.5 - 2.0**-12, 0.5, 2.0**-24), 1, 1.0),
    ((0.5 + 2.0**-11, 0.5, 2.0**-24), 0, 2.0),
    ((0.5, 0.5, -(2.0**-24)), 0, 1.0),
])
def test_made_up_rows_with_outputs_held_with_and_without_a_structural_side(outputs, faithful, error):
    got, r = measure_made_up("float16", "softmax", (0.0, 0.0, -1024.0), outputs)
    assert list(r) == [0.5, 0.5, 0.0]
    assert got["correctly_rounded"] == 0 and got["faithful"] == faithful, (got, r)
    assert got["max_error"] == pytest.approx(error, rel=1e-9), (got, r)


def test_made_up_row_unfaithful_elsewhere_keeps_its_classification():
    # output 0 two units off (the enclosure decides: unfaithful), output 2 the neighbour of 0 on
    # v's side: the row is unfaithful, its error output 0's
    row = (1.0, 0.0, -1024.0)
    exact = [float(v) for v in reference.exact("softmax", np.array([row], np.float16))[0][0]]
    r0 = float(np.float16(exact[0]))
    c0 = r0 + 2 * 2.0**-11  # r0 in [0.5, 1): unit 2**-11
    got, r = measure_made_up("float16", "softmax", row, (c0, float(np.float16(exact[1])), 2.0**-24))
    assert got["faithful"] == 0 and got["correctly_rounded"] == 0
    assert got["max_error"] == pytest.approx((c0 - exact[0]) / 2.0**-11, abs=1e-6)


@pytest.mark.parametrize("emin", [-14, -126, -6, -15])
def test_inverse_unit_is_the_binade_of_the_end_nearest_zero(emin):
    inv = exhaustive._inverse_units(11, emin)
    ends = [0.0, -0.0, 5e-324, 2.0**-1022, 2.0**-1022 * (1 - 2.0**-52), 2.0**emin,
            np.nextafter(2.0**emin, 0), np.nextafter(2.0**emin, 1), 0.75, 1.0, 1.5, 2.0**1023,
            np.finfo(np.float64).max] + list(np.random.default_rng(-emin).standard_normal(200) * 2.0**-10)
    for a in ends:
        for b in ends:
            lo, hi = sorted((a, -b if b > 1 else b))
            near = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
            bits = int(np.float64(near).view(np.int64))
            binade = max((bits >> 52) - 1023, emin)  # the float64 exponent field
            assert exhaustive._inverse_unit(lo, hi, inv, emin) == inv[binade - emin], (lo, hi)


def test_structural_side_of_rows_with_dead_entries():
    side = exhaustive._structural_side
    x = np.array([0.0, -np.inf, -1.0])
    assert side(x, 0, 1.0, False) == -1 and side(x, 2, 0.0, False) == 1
    assert side(x, 0, 0.75, False) == 0  # inside (0, 1): not told
    assert side(x, 1, 0.0, False) == 0  # a dead entry: exactly 0
    assert side(np.array([2.0, -np.inf]), 0, 1.0, False) == 0  # one live entry: exactly 1
    assert side(x, 0, 0.0, True) == -1 and side(x, 2, -1.0, True) == -1  # r >= x_j - max
    assert side(x, 2, -1.5, True) == 0 and side(x, 0, np.inf, True) == 0
    assert list(exhaustive._structural_sides(x[None, :], np.array([[1.0, 0.0, 0.0]]), False)[0]) == [-1, 0, 1]


def test_side_beyond_double_doubles_by_interval_arithmetic():
    # 0.5 + 2**-80: a double-double would not round it away from 0.5 (rounding to float8 loses
    # it), mpmath's intervals tell it is above
    x = np.array([2.0**-79, 0.0])
    assert exhaustive._side("softmax", x, 0, 0.5) == 1 and exhaustive._side("softmax", x, 1, 0.5) == -1
    # -ln 2 = -0.693147180559945309...; float64's -0.6931471805599453 is -0.693147180559945286...
    assert exhaustive._side("log_softmax", np.array([0.0, 0.0]), 0, -0.6931471805599453) == -1
    assert exhaustive._side("softmax", np.array([1.0, -np.inf]), 0, 1.0) == 0  # exactly 1


def _bit_keys(rows):
    """Each row's bit patterns as one integer, first entry most significant."""
    bits = rows.view(np.dtype(f"u{rows.dtype.itemsize}")).astype(object)
    return [sum(int(b) << (8 * rows.dtype.itemsize * (rows.shape[1] - 1 - j)) for j, b in enumerate(row))
            for row in bits]


def test_worst_rows_are_the_largest_errors_then_bit_order():
    rows = np.arange(1000, dtype=np.uint16)[::-1].reshape(-1, 2).view(np.float16)  # keys descending
    err = np.zeros(len(rows))
    tied = np.array([3, 10, 20, 30, 40, 50, 60])
    err[tied] = 7.0  # seven rows tie at the largest error
    err[5] = 9.0
    got = exhaustive._first_rows(err, rows, np.arange(len(rows)))
    assert list(got) == [5] + list(tied[::-1][:exhaustive.KEEP - 1])  # later rows: smaller keys
    assert list(exhaustive._first_rows(err, rows, np.array([3, 5]))) == [5, 3]
    assert list(exhaustive._first_rows(err, rows, np.array([], dtype=np.int64))) == []
    assert list(exhaustive._first_rows(err, rows, np.arange(len(rows)), by_error=False)) == \
        list(range(len(rows) - 1, len(rows) - 1 - exhaustive.KEEP, -1))


@pytest.mark.parametrize("seed", range(20))
def test_first_rows_are_a_sort_by_error_then_bits(seed):
    rng = np.random.default_rng(seed)
    dtype, width = [(np.float16, 2), (np.uint8, 3), (np.float16, 3)][seed % 3]
    rows = rng.integers(0, 2**(8 * np.dtype(dtype).itemsize), size=(300, width),
                        dtype=np.uint64).astype(f"u{np.dtype(dtype).itemsize}").view(dtype)
    err = rng.integers(0, 4, size=300).astype(np.float64) * rng.choice([1.0, 0.25])  # ties
    candidates = np.sort(rng.choice(300, size=rng.integers(1, 300), replace=False))
    keys = _bit_keys(rows)
    by_error = sorted(candidates, key=lambda i: (-err[i], keys[i]))
    by_bits = sorted(candidates, key=lambda i: keys[i])
    assert list(exhaustive._first_rows(err, rows, candidates)) == by_error[:exhaustive.KEEP]
    assert list(exhaustive._first_rows(err, rows, candidates, by_error=False)) == by_bits[:exhaustive.KEEP]
