"""softmax_bench.peers: adapters, user functions, clear errors for missing ones."""
import numpy as np
import pytest

from softmax_bench import peers


def test_numpy_peer_is_the_composed_form():
    x = np.array([[1.0, 2.0, 3.0], [0.0, -np.inf, 0.0]])
    y = peers.get_peer("numpy")(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_array_equal(y, e / e.sum(axis=-1, keepdims=True))
    assert y.dtype == x.dtype


def test_user_function_by_module_path():
    p = peers.get_peer("softmax_bench.peers:numpy_softmax")
    x = np.array([0.0, 1.0], np.float32)
    np.testing.assert_array_equal(p(x), peers.get_peer("numpy")(x))


def test_scipy_peer_and_its_nan_on_posinf():
    pytest.importorskip("scipy")
    p = peers.get_peer("scipy")
    assert np.isnan(p(np.array([0.0, np.inf]))).all()  # what the audit reports for scipy
    assert peers.get_peer("scipy.special:softmax").name == "scipy.special:softmax"


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown peer 'nump'"):
        peers.get_peer("nump")
    with pytest.raises(peers.PeerUnavailable, match="cannot import 'no_such_module_xyz'"):
        peers.get_peer("no_such_module_xyz:f")
    with pytest.raises(peers.PeerUnavailable, match="no attribute 'nope'"):
        peers.get_peer("numpy:nope")
    bad_shape = peers.Peer("sum", lambda x: x.sum(axis=-1))
    with pytest.raises(ValueError, match="returned shape"):
        bad_shape(np.zeros((2, 3)))


def test_available_peers_reports_every_builtin():
    status = peers.available_peers()
    assert set(status) == set(peers.BUILTIN_PEERS)
    assert status["numpy"] == "available"
    assert all(v == "available" or "not installed" in v for v in status.values())
