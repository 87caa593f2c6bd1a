"""Docstrings: every public function and method has a NumPy-style docstring with at least
one example, and the examples pass as doctests against the installed package. (.ci/run also
runs `pytest --doctest-modules --pyargs fastnorm` from outside the source tree.)"""
import doctest
import importlib
import inspect

import pytest

import fastnorm

# (module, names): the public modules and their public functions and classes
PUBLIC = [("fastnorm", [n for n in fastnorm.__all__ if n != "__version__"]),
          ("fastnorm.dask", None), ("fastnorm.torch", ["optimize", "report"])]
MOMENTS_METHODS = ["update", "merge", "copy", "var", "std"]


def _public_objects():
    for module_name, names in PUBLIC:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            yield pytest.param(None, marks=pytest.mark.skip(reason=f"{module_name}: {exc}"),
                               id=module_name)
            continue
        for name in names if names is not None else module.__all__:
            yield pytest.param(getattr(module, name), id=f"{module_name}.{name}")
    for name in MOMENTS_METHODS:
        yield pytest.param(getattr(fastnorm.Moments, name), id=f"fastnorm.Moments.{name}")


def _examples(obj):
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, getattr(obj, "__qualname__", obj.__name__),
                        globs={}, module=False)
    return [t for t in tests if t.examples]


@pytest.mark.parametrize("obj", list(_public_objects()))
def test_public_docstring_has_passing_examples(obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{obj!r} has no docstring"
    assert "Examples\n--------" in doc, "NumPy-style Examples section missing"
    if inspect.isfunction(obj) and len(inspect.signature(obj).parameters) > 1:
        assert "Parameters\n----------" in doc, "NumPy-style Parameters section missing"
    tests = _examples(obj)
    assert tests and sum(len(t.examples) for t in tests) >= 1
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= 1
