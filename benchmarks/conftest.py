"""Keeps benchmarks/ runnable as plain tests when pytest-benchmark is not installed: a stand-in
`benchmark` fixture then calls the function once (what --benchmark-disable does)."""
import pytest

try:
    import pytest_benchmark  # noqa: F401
except ImportError:
    class _CallOnce:
        def __init__(self):
            self.group = None
            self.name = None
            self.extra_info = {}

        def __call__(self, function, *args, **kwargs):
            return function(*args, **kwargs)

        def pedantic(self, target, args=(), kwargs=None, setup=None, **_):
            if setup is not None:
                got = setup()
                if got is not None:
                    args, kwargs = got
            return target(*args, **(kwargs or {}))

    @pytest.fixture
    def benchmark():
        return _CallOnce()
