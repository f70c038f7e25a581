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
