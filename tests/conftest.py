"""The test session compiles every kernel first, with its split rows function, in one process
per core (kernels/warm.py), so that the tests load them from numba's cache instead of compiling
them one after another."""


def pytest_sessionstart(session):
    if session.config.getoption("collectonly", False):
        return
    from softmax_bench.kernels.warm import warm_parallel

    warm_parallel(split=True)
