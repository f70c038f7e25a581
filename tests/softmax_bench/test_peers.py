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
    bad_shape = peers.Peer("sum", {"softmax": lambda x: x.sum(axis=-1)})
    with pytest.raises(ValueError, match="returned shape"):
        bad_shape(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown function 'softmin'"):
        peers.split_function("softmin=mod:f")


def test_every_builtin_peer_function_against_the_reference():
    """numpy and scipy (torch where installed) provide each function along the last axis, within
    a few ULPs of the reference on easy rows (the audit measures them properly)."""
    from softmax_bench import reference
    from softmax_bench.formats import ulp_error

    x = np.random.default_rng(1).normal(0, 2, (4, 9))
    g = np.random.default_rng(2).normal(0, 1, (4, 9))
    for name in ("numpy", "scipy", "torch", "jax"):
        if name != "numpy" and peers.available_peers()[name] != "available":
            continue
        p = peers.get_peer(name)
        assert set(p.fns) == set(peers.peer_functions(name))
        for f in p.fns:
            extra = (g,) if f == "softmax_vjp" else ()
            y = p(x, f, *extra)
            exact = getattr(reference, f)(x, *extra)
            if f == "softmax_vjp":  # cancellation in g_i - <g, y>: compare with the scale of y*|g|
                scale = reference.softmax(x) * (np.abs(g) + np.abs((g * reference.softmax(x)).sum(-1, keepdims=True)))
                assert (np.abs(y - exact) <= 64 * 2.0**-53 * scale.max(-1, keepdims=True)).all(), name
            else:
                assert ulp_error(y, exact).max() <= 64, (name, f)


def test_torch_backward_pass_is_autograd_in_the_input_format():
    """torch's softmax_vjp is x.grad after softmax(x).backward(g), in x's own dtype (bfloat16
    crossing as its bits)."""
    torch = pytest.importorskip("torch")
    import ml_dtypes

    p = peers.get_peer("torch")
    rng = np.random.default_rng(3)
    for dtype in (np.float32, ml_dtypes.bfloat16):
        x = rng.normal(0, 2, (3, 5)).astype(dtype)
        g = rng.normal(0, 1, (3, 5)).astype(dtype)
        y = p(x, "softmax_vjp", g)
        assert y.dtype == x.dtype and y.shape == x.shape
        t = torch.tensor(x.astype(np.float32)).to(torch.bfloat16 if dtype is not np.float32 else torch.float32)
        t.requires_grad_(True)
        torch.softmax(t, -1).backward(torch.tensor(g.astype(np.float32)).to(t.dtype))
        assert np.array_equal(y.astype(np.float32), t.grad.float().numpy())
    assert peers.peer_functions("scipy") == ("softmax", "log_softmax", "logsumexp")


def test_peer_functions_are_read_from_the_name():
    assert peers.peer_functions("numpy") == peers.FUNCTIONS
    assert peers.peer_functions("mod:f(axis=-1)") == ("softmax",)
    assert peers.peer_functions("logsumexp=mod:f") == ("logsumexp",)
    assert peers.split_function("log_softmax=m.x:f(a=1)") == ("log_softmax", "m.x:f(a=1)")


def test_available_peers_reports_every_builtin():
    status = peers.available_peers()
    assert set(status) == set(peers.BUILTIN_PEERS)
    assert status["numpy"] == "available"
    assert all(v == "available" or "not installed" in v for v in status.values())
