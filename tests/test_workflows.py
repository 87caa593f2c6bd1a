"""The GitHub Actions workflows (.github/workflows): the wheels workflow builds exactly what
cibuildwheel lists for the [tool.cibuildwheel] tables, actions are pinned to commits, and
tokens are read-only. (Their schema is checked in .ci/run with check-jsonschema.)"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

yaml = pytest.importorskip("yaml", reason="the workflow checks need PyYAML")

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PLATFORMS = ("linux", "macos", "windows")

pytestmark = pytest.mark.skipif(not WORKFLOWS.is_dir(),
                                reason="no .github/workflows (tests run outside the checkout)")


def _load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _identifiers(env):
    exe = shutil.which("cibuildwheel")
    if exe is None:
        pytest.skip("cibuildwheel is not installed (pip install cibuildwheel)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    result = subprocess.run([exe, "--print-build-identifiers", str(ROOT)], env={**clean, **env},
                            capture_output=True, text=True, check=True, cwd=ROOT)
    return result.stdout.split()


def _wheel_jobs():
    job = _load("wheels.yml")["jobs"]["wheels"]
    step = next(s for s in job["steps"] if s.get("uses", "").startswith("pypa/cibuildwheel@"))
    return job["strategy"]["matrix"]["include"], step["env"]


def test_wheel_jobs_cover_exactly_the_listed_builds():
    matrix, step_env = _wheel_jobs()
    built = []
    for entry in matrix:
        env = {k: re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: entry[m.group(1)], v)
               for k, v in step_env.items()}
        ids = _identifiers(env)
        assert ids, f"the job {entry} builds nothing"
        built += ids
    listed = [i for p in PLATFORMS for i in _identifiers({"CIBW_PLATFORM": p})]
    assert len(built) == len(set(built)), "two jobs build the same wheel"
    assert sorted(built) == sorted(listed)


def test_wheel_jobs_upload_wheels_and_sdist():
    jobs = _load("wheels.yml")["jobs"]
    uploads = {job_name: [s["with"]["path"] for s in job["steps"]
                          if s.get("uses", "").startswith("actions/upload-artifact@")]
               for job_name, job in jobs.items()}
    assert uploads["wheels"] == ["wheelhouse/*.whl"]
    assert uploads["sdist"] == ["dist/*.tar.gz"]


@pytest.mark.parametrize("name", ["test.yml", "wheels.yml"])
def test_actions_pinned_and_tokens_read_only(name):
    workflow = _load(name)
    assert workflow["permissions"] == {"contents": "read"}
    for job_name, job in workflow["jobs"].items():
        assert "permissions" not in job, f"job {job_name} widens the token's permissions"
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_test_workflow_runs_every_supported_python():
    tomllib = pytest.importorskip("tomllib", reason="tomllib: Python >= 3.11")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    oldest = int(re.fullmatch(r">=3\.(\d+)", requires).group(1))
    matrix = _load("test.yml")["jobs"]["test"]["strategy"]["matrix"]
    assert set(matrix["os"]) >= {"ubuntu-24.04", "macos-15", "windows-2025"}
    minors = sorted(int(v.split(".")[1]) for v in matrix["python"])
    assert minors == list(range(oldest, minors[-1] + 1)) and minors[-1] >= 14
