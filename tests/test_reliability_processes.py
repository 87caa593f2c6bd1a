"""Fault scenarios that need a process of their own (issue 5, DESIGN.md section 4).

* fork: a child forked (os.fork, a multiprocessing "fork" pool, PyTorch DataLoader workers)
  after the parent ran parallel kernels computes the parent's results and never hangs --
  GNU libgomp is not fork-safe;
* a second OpenMP user in the process: PyTorch (which ships its own libgomp) and fastnorm
  interleaved and concurrent, both import orders;
* thread counts past what the machine can create: a clear error or the right result, never
  a dead process.

Every scenario runs in a fresh interpreter under a timeout, in its own process group, so a
hang fails the test (and is killed with all its children) instead of hanging the suite.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

TIMEOUT = 60

# The workload every scenario compares: all six ops (training/eval, return_stats, in place)
# and moments on arrays large enough to run in parallel; `workload(nt)` returns the bytes of
# every array produced.
PRELUDE = r'''
import os, sys, threading, time
import numpy as np
import fastnorm as fn

_rng = np.random.default_rng(20240605)
X4 = (_rng.standard_normal((8, 4, 64, 64)) * 2 + 5).astype(np.float32)
XL = (_rng.standard_normal((3, 2 ** 16)) * 3 - 1).astype(np.float64)
XC = (_rng.standard_normal((20000, 3)) + 7).astype(np.float32)

def workload(nt):
    res = []
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    res += [fn.batch_norm(X4, rm, rv, None, None, True, num_threads=nt), rm, rv]
    res.append(fn.batch_norm(X4, rm, rv, None, None, False, num_threads=nt))
    res.append(fn.batch_norm(XC, None, None, None, None, True, num_threads=nt))
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    res += [fn.instance_norm(X4, rm, rv, num_threads=nt), rm, rv]
    res += list(fn.group_norm(X4, 2, return_stats=True, num_threads=nt))
    res += list(fn.layer_norm(XL, XL.shape[-1], return_stats=True, num_threads=nt))
    res.append(fn.rms_norm(X4, (64, 64), num_threads=nt))
    res.append(fn.channel_layer_norm(X4, num_threads=nt))
    res.append(fn.channel_layer_norm(XC, num_threads=nt))
    res += list(fn.moments(XL, axis=0, num_threads=nt))
    res += list(fn.moments(X4, axis=(0, 2, 3), num_threads=nt))
    res += list(fn.moments(XC, axis=0, num_threads=nt))
    y = X4.copy()
    fn.layer_norm(y, 64, out=y, num_threads=nt)
    res.append(y)
    return [np.ascontiguousarray(r).tobytes() for r in res]

def check(got, ref, what):
    if got != ref:
        bad = [i for i, (g, r) in enumerate(zip(got, ref)) if g != r]
        print("MISMATCH in", what, "results", bad, flush=True)
        return False
    return True
'''


def run_scenario(code, tmp_path, timeout=TIMEOUT, env=None):
    """Run PRELUDE + code in a fresh interpreter (cwd outside the repository, so the
    installed fastnorm is imported), in its own process group; fail on a timeout (killing
    the group: forked children included) or a non-zero exit. Returns stdout."""
    script = PRELUDE + "\n" + textwrap.dedent(code)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(tmp_path),
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("scenario did not finish within %d s (deadlock?)\nstdout:\n%s\nstderr:\n%s"
                    % (timeout, out, err[-3000:]))
    finally:
        try:                               # leftovers of a failed scenario (its children)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    assert proc.returncode == 0, "scenario failed (exit %s)\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, out, err[-3000:])
    assert "SCENARIO OK" in out, out + err
    return out


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


# --------------------------------------------------------------------------------------
# fork
# --------------------------------------------------------------------------------------

@needs_fork
def test_os_fork_after_parallel_kernels(tmp_path):
    """The parent runs parallel kernels, then forks: the child (and a grandchild forked
    from it) compute the parent's bits with num_threads 2, None, 8 and 1, without hanging;
    the parent keeps its parallel kernels afterwards."""
    run_scenario(r'''
        ref = workload(2)
        assert check(workload(None), ref, "parent None") and check(workload(1), ref, "parent 1")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for nt in (2, None, 8, 1):
                    if not check(workload(nt), ref, "child nt=%s" % nt):
                        code = 3
                pid2 = os.fork()
                if pid2 == 0:
                    os._exit(0 if check(workload(2), ref, "grandchild") else 3)
                _, st = os.waitpid(pid2, 0)
                if os.waitstatus_to_exitcode(st) != 0:
                    code = 5
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 4
            sys.stdout.flush()
            os._exit(code)
        _, st = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(st) == 0, os.waitstatus_to_exitcode(st)
        assert check(workload(2), ref, "parent after fork")
        print("SCENARIO OK")
    ''', tmp_path)


@needs_fork
def test_os_fork_while_another_thread_runs_parallel_kernels(tmp_path):
    """A threaded server forks while one of its threads is inside parallel kernels: the
    children still compute the right bits and exit."""
    run_scenario(r'''
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads (3.12+)
        ref = workload(2)
        stop = threading.Event()
        def busy():
            while not stop.is_set():
                workload(2)
        th = threading.Thread(target=busy)
        th.start()
        children = []
        for i in range(6):
            time.sleep(0.02 * (i + 1))
            pid = os.fork()
            if pid == 0:
                os._exit(0 if check(workload(2), ref, "child %d" % i) else 3)
            children.append(pid)
        stop.set()
        th.join()
        codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in children]
        assert codes == [0] * len(children), codes
        print("SCENARIO OK")
    ''', tmp_path)


@needs_fork
def test_multiprocessing_fork_pool_after_parallel_kernels(tmp_path):
    """A "fork" multiprocessing pool created after parallel kernels ran: map an op over
    arrays and the whole workload in the workers; results equal the parent's. The parent
    runs parallel kernels while the pool is alive, and a second pool is forked after."""
    run_scenario(r'''
        import multiprocessing as mp
        arrays = [(np.random.default_rng(i).standard_normal((64, 4096)) * (i + 1) + i)
                  .astype(np.float32) for i in range(6)]
        def normalize(x):
            return fn.layer_norm(x, x.shape[-1], num_threads=2)
        def task(nt):
            return workload(nt)
        ref = workload(2)
        expect = [normalize(x) for x in arrays]
        ctx = mp.get_context("fork")
        for round_ in range(2):
            with ctx.Pool(2) as pool:
                got = pool.map(normalize, arrays, chunksize=1)
                results = pool.map(task, [2, None, 1, 8], chunksize=1)
                assert check(workload(2), ref, "parent while the pool runs")
            for g, e in zip(got, expect):
                assert g.tobytes() == e.tobytes(), "pool worker result differs"
            for r in results:
                assert check(r, ref, "pool task")
            workload(2)                          # more parallel work before the next pool
        print("SCENARIO OK")
    ''', tmp_path)


@needs_fork
def test_torch_dataloader_fork_workers(tmp_path):
    """PyTorch DataLoader workers (forked on Linux) normalizing samples with fastnorm after
    the parent ran parallel kernels."""
    pytest.importorskip("torch")
    run_scenario(r'''
        import torch
        from torch.utils.data import DataLoader, Dataset
        torch.set_num_threads(2)
        ref = workload(2)
        samples = [(np.random.default_rng(i).standard_normal((4, 128, 128)) + i)
                   .astype(np.float32) for i in range(8)]
        class DS(Dataset):
            def __len__(self):
                return len(samples)
            def __getitem__(self, i):
                y = fn.instance_norm(samples[i][None], num_threads=2)[0]
                return torch.from_numpy(y)
        expect = [fn.instance_norm(s[None], num_threads=2)[0] for s in samples]
        loader = DataLoader(DS(), batch_size=1, num_workers=2,
                            multiprocessing_context="fork")
        for epoch in range(2):
            for i, batch in enumerate(loader):
                assert batch[0].numpy().tobytes() == expect[i].tobytes(), (epoch, i)
            assert check(workload(2), ref, "parent between epochs")
        print("SCENARIO OK")
    ''', tmp_path)


# --------------------------------------------------------------------------------------
# PyTorch's OpenMP runtime in the same process
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("first", ["torch", "fastnorm"], ids=["torch_first", "fastnorm_first"])
def test_torch_and_fastnorm_interleaved_and_concurrent(first, tmp_path):
    """torch ops with torch.set_num_threads(2) and fastnorm ops with num_threads=2:
    alternating, then at the same time from two Python threads. fastnorm keeps its bits,
    agrees with torch, nothing crashes or deadlocks."""
    pytest.importorskip("torch")
    imports = "import torch\nimport fastnorm\n" if first == "torch" else \
        "import fastnorm\nimport torch\n"
    run_scenario(imports + textwrap.dedent(r'''
        import torch.nn.functional as F
        torch.set_num_threads(2)
        rng = np.random.default_rng(7)
        x = (rng.standard_normal((16, 32, 32, 64)) * 2 + 3).astype(np.float32)
        xt = torch.from_numpy(x)
        def torch_ops():
            return [F.layer_norm(xt, (32, 64)).numpy(),
                    F.batch_norm(xt, None, None, training=True).numpy(),
                    F.group_norm(xt, 8).numpy(),
                    (xt.reshape(512, -1) @ xt.reshape(512, -1).T).numpy()]
        def fastnorm_ops():
            return [fn.layer_norm(x, (32, 64), num_threads=2),
                    fn.batch_norm(x, None, None, training=True, num_threads=2),
                    fn.group_norm(x, 8, num_threads=2)]
        first_fn = fastnorm_ops()
        first_ref = workload(2)
        for it in range(8):
            t = torch_ops()
            f = fastnorm_ops()
            for a, b in zip(f, first_fn):
                assert a.tobytes() == b.tobytes(), "fastnorm bits changed at iteration %d" % it
            for a, b in zip(f, t[:3]):
                assert np.max(np.abs(a - b)) < 1e-4, "fastnorm and torch disagree"
        assert check(workload(2), first_ref, "after interleaving")

        errors = []
        def loop(body, n):
            try:
                for _ in range(n):
                    body()
            except BaseException as exc:
                errors.append(repr(exc))
        def fastnorm_body():
            if not check(workload(2), first_ref, "concurrent with torch"):
                raise AssertionError("fastnorm results changed next to torch")
        threads = [threading.Thread(target=loop, args=(torch_ops, 8)),
                   threading.Thread(target=loop, args=(fastnorm_body, 8))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        print("SCENARIO OK")
    '''), tmp_path)


# --------------------------------------------------------------------------------------
# thread counts past what the machine can create
# --------------------------------------------------------------------------------------

_UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(_UNDER_ASAN, reason="the address-space limit this scenario needs to stay "
                    "safe on a broken build is incompatible with AddressSanitizer")
@pytest.mark.parametrize("nt", [2 ** 31 - 1, 10 ** 9], ids=["2**31-1", "10**9"])
def test_absurd_thread_count_is_an_error_or_works(nt, tmp_path):
    """num_threads=2**31-1 or 10**9 on an input large enough to run in parallel: either the
    right result (results do not depend on the thread count, so a cap is invisible) or a
    ValueError naming num_threads -- never a dead process (libgomp exits when it cannot
    allocate or create that many threads). The address space is capped at 16 GiB so that a
    build that really tries cannot exhaust the machine."""
    run_scenario(r'''
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
        ref = workload(2)
        NT = %d
        try:
            got = workload(NT)
        except (ValueError, OverflowError) as exc:
            assert "num_threads" in str(exc), exc
        else:
            assert check(got, ref, "num_threads=%%d" %% NT)
        print("SCENARIO OK")
    ''' % nt, tmp_path)
