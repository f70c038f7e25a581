"""softmax_bench.metrics: every row class, the ULP and relative errors, the sum defect."""
import numpy as np

from softmax_bench import metrics
from softmax_bench.metrics import ROW_CLASSES


def classes(c, r, budget=2.0):
    return [ROW_CLASSES[k] for k in metrics.row_classes(np.array(c, np.float32), np.array(r, np.float32), budget)]


def test_row_classes_each_case():
    one_up = float(np.nextafter(np.float32(0.5), np.float32(1)))
    five_up = 0.5 + 5 * 2.0**-24
    ref = [[0.5, 0.5]] * 7
    got = [
        [0.5, 0.5],
        [one_up, 0.5],
        [five_up, 0.5],
        [0.0, 0.5],
        [0.0, 0.0],
        [np.inf, 0.5],
        [np.nan, 0.5],
    ]
    assert classes(got, ref) == ["correct", "within_k", "finite_wrong", "spurious_zero", "all_zero", "inf", "nan"]
    # A NaN reference row matched by NaN is correct; a 0 that the reference also has is fine.
    assert classes([[np.nan, np.nan], [1.0, 0.0]], [[np.nan, np.nan], [1.0, 0.0]]) == ["correct", "correct"]


def test_numbers_where_the_reference_is_nan_are_missed_nan_never_correct():
    """Rows with +inf input: the reference row is NaN. Naive's [0, NaN] for [1, inf] and a
    clamped [0, 1] are both wrong there, whatever their ULP count; neither is finite_wrong."""
    ref = [[np.nan, np.nan]] * 3
    assert classes([[0.0, np.nan], [0.0, 1.0], [np.nan, np.nan]], ref) == ["missed_nan", "missed_nan", "correct"]
    s = metrics.summarise(np.array([[0.0, 1.0]], np.float32), np.array([[np.nan, np.nan]], np.float32))
    assert s["missed_nan_rows"] == 1 and s["correct_rows"] == 0
    assert sum(s[f"{c}_rows"] for c in ROW_CLASSES) == s["rows"]


def test_summarise_counts_and_errors():
    ref = np.array([[0.25, 0.75], [0.5, 0.5], [0.5, 0.5]], np.float32)
    got = np.array([[0.25, 0.75], [0.5 + 2**-23, 0.5], [np.nan, np.nan]], np.float32)
    s = metrics.summarise(got, ref)
    assert s["rows"] == 3 and s["correct_rows"] == 1 and s["within_k_rows"] == 1 and s["nan_rows"] == 1
    assert s["max_ulp"] == 2.0  # 2**-23 at 0.5 is two ulps of 0.5 (ulp = 2**-24)
    assert s["max_rel"] == 2**-22
    assert s["median_ulp"] == 0.0


def test_relative_error_edges():
    c = np.array([0.0, 1e-30, np.inf, np.nan, 2.0])
    r = np.array([0.0, 0.0, np.inf, np.nan, 1.0])
    assert metrics.relative_error(c, r).tolist() == [0.0, np.inf, 0.0, 0.0, 1.0]
    assert metrics.relative_error(np.array([np.nan]), np.array([1.0])).tolist() == [np.inf]


def test_sum_defect_in_units_of_u():
    y = np.array([[0.5, 0.5], [0.5, 0.5 + 2**-24]], np.float32)
    assert metrics.sum_defect(y).tolist() == [0.0, 1.0]
    assert np.isnan(metrics.sum_defect(np.array([[np.nan, 1.0]], np.float32))).all()


def test_summarise_measures_against_the_exact_value():
    """With the exact values (hi, lo), max_ulp_exact is fractional: the correctly rounded 1/3
    is below 0.5, its other neighbour between 0.5 and 1; without them it is None."""
    third = np.float32(1 / 3)
    exact = (np.full((1, 2), 1 / 3), np.full((1, 2), 1 / 3 - float(np.float64(1 / 3))))
    other = np.nextafter(third, np.float32(0) if float(third) > 1 / 3 else np.float32(1))
    cr = np.array([[third, third]], np.float32)
    assert metrics.summarise(cr, cr, values=exact)["max_ulp_exact"] < 0.5
    s = metrics.summarise(np.array([[third, other]], np.float32), cr, values=exact)
    assert 0.5 <= s["max_ulp_exact"] < 1.0 and s["max_ulp"] == 1.0
    assert metrics.summarise(cr, cr)["max_ulp_exact"] is None
