"""reference.conditioning: kappa_i = sum_j |J_ij x_j| / y_i, from its definition."""
import numpy as np

from softmax_bench import reference as R


def test_condition_number_matches_its_definition():
    """From the correctly rounded J and y (each within u = 2**-53 relative), the definition's
    right side is within ~3u of the truth when no cancellation occurs (all terms are |.|)."""
    x = np.array([0.5, -3.0, 2.0, 0.0, 7.25, -np.inf])
    J = R.jacobian(x).astype(np.float64)
    y = R.softmax(x)
    finite = np.isfinite(x)
    xf = np.where(finite, x, 0.0)
    expected = np.abs(J * xf[None, :]).sum(axis=1)[finite] / y[finite]
    kappa = R.condition_number(x)
    np.testing.assert_allclose(kappa[finite], expected, rtol=8 * 2.0**-53 * len(x))
    assert kappa[~finite].tolist() == [0.0]


def test_condition_number_grows_with_the_spread_not_the_shift_direction():
    x = np.array([0.0, 1.0, 2.0])
    k1 = R.condition_number(x).max()
    k2 = R.condition_number(10 * x).max()
    assert k2 > 5 * k1  # the problem gets worse conditioned as the inputs spread
    assert np.isnan(R.condition_number(np.array([1.0, np.nan]))).all()
    assert np.isnan(R.condition_number(np.array([-np.inf, -np.inf]))).all()
    assert R.condition_number(np.zeros((2, 3), dtype=np.float32)).shape == (2, 3)


def _kappa_by_definition(row, prec=8000):
    """sum_j |delta_ij - y_j| |x_j| straight from the definition, at a precision where its
    cancellations (1 - y_i for a dominant y_i) cannot matter for these rows."""
    import mpmath

    with mpmath.workprec(prec):
        xs = [mpmath.mpf(float(v)) for v in row]
        m = max(xs)
        e = [mpmath.exp(v - m) for v in xs]
        s = mpmath.fsum(e)
        y = [v / s for v in e]
        return [float(mpmath.fsum(abs((1 if i == j else 0) - y[j]) * abs(xs[j]) for j in range(len(xs))))
                for i in range(len(xs))]


def test_condition_number_has_no_cancellation():
    """Every component to 2**-53 relative (the float64 rounding of a value kept within 2**-60),
    where 1 - 2 y_i cancelled: [100, 0] gave 0.0 for 3.72e-42; rows of N(0, 10^4) of length 2
    and 3 (the issue's sample: 18 of 695 components were off by more than 1e-12)."""
    rng = np.random.default_rng(11)
    rows = [np.array([100.0, 0.0]), np.array([1e-300, -50.0]), np.array([700.0, -700.0, 0.0]),
            np.array([5.0, 5.0, -1e4]), np.array([0.0, 0.0, 30.0])]
    rows += [rng.standard_normal(rng.integers(2, 4)) * 10.0 ** rng.uniform(-2, 3) for _ in range(240)]
    checked = 0
    for row in rows:
        got = R.condition_number(row)
        want = np.array(_kappa_by_definition(row))
        np.testing.assert_allclose(got, want, rtol=2 * 2.0**-53, atol=0, err_msg=str(row.tolist()))
        checked += row.size
    assert checked > 600
    assert abs(R.condition_number(np.array([100.0, 0.0]))[0] - 3.7200759760208e-42) < 1e-54
