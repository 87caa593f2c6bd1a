"""Benchmark case set and runner for `python -m fastnorm` and benchmarks/ (DESIGN.md section 7).

Each case (cases.py) is a normalization on a float32 tensor drawn from a real workload. For a
case, `Setup` (data.py) builds the data (random input, affine weight/bias, running statistics
where the op has them) and one *runner* per implementation, from that implementation's table
op -> builder in runners/:

  fastnorm        fastnorm in place (out=x)
  fastnorm_alloc  fastnorm allocating its output (out=None)
  fastnorm_nchw   channels-last cases only: fastnorm in place on the same values in NCHW
                  memory, timed beside the case (the table's /NCHW column)
  numpy           plain vectorized float32 NumPy formulas
  roof            one in-place pass x = a*x + b over the same number of bytes, same threads
  torch           torch.nn.functional, torch.set_num_threads(threads), inference mode
  onnxruntime     a one-op ONNX model built in memory, intra_op_num_threads=threads

(tables in runners/fastnorm.py, which also has the roof, runners/numpy.py, runners/torch.py
and runners/onnxruntime.py).

Before it is timed, every runner's result on fresh data is checked against the float64
formulas of fastnorm._reference (a benchmark never times a wrong kernel). PyTorch, ONNX
Runtime and onnx are optional: a peer that is not installed (or an ONNX op that this ONNX
Runtime cannot run) is reported as unavailable.

`measure` (timing.py) times the runners of one case in one process: a warm-up that also
estimates each runner's call time, then rounds interleaved (the order shuffled each round),
each sample the mean of enough back-to-back calls to last a few milliseconds followed by a
short pause (other runtimes' idle threads spin for a while after a call), and the median over
the rounds; ratios are medians of the per-round ratios.

`run` (phases.py) runs a list of cases in two phases, because PyTorch and ONNX Runtime leave
threads spinning after each call (and start threads when imported), so a roof or fastnorm
sample taken after a peer has run is slowed by an unknown amount:

  phase 1  for every case: fastnorm in place and allocating, NumPy and the roof, checked and
           timed before any peer has been imported or run in the process (whether a peer is
           installed is looked up without importing it). The table's times, GB/s, x numpy
           and /roof come from here.
  phase 2  then for every case, on a fresh Setup with the same data: the peers, checked, then
           timed in rounds interleaved with fastnorm in place, with the pause after each
           peer sample. "x torch" and "x ORT" are the per-round ratios of this phase.

A case's time budget is shared between its two phases by their number of runners. The
result of each case (results.py) keeps both phases; report.py formats the table, the JSON
document and the plot; machine.py says which CPU, caches and kernel variant ran.

images.py holds the image cases of normalize_image (decoded uint8/uint16 HWC images to a
model's input) with their own runners (fastnorm, NumPy, the roof, OpenCV, albumentations,
PyTorch tensor ops), run in the same two phases and printed as a second table.
"""
from .cases import CASES, DEFAULT_THREADS, DTYPE, EPS, MOMENTUM, Case, select_cases
from .data import Setup
from .machine import machine_info, versions
from .phases import checked_runner, run, run_phase_1, run_phase_2
from .report import (fmt_time, header_lines, plot, table_header, table_notes, table_row,
                     write_json)
from .results import BUSY, NOISY, CaseResult, PhaseTimes
from .runners import (IMPLEMENTATIONS, PEERS, Runner, Unavailable, applies,
                      available_implementations)
from .timing import FULL, QUICK, Settings, Timing, measure

__all__ = [
    "CASES", "DEFAULT_THREADS", "DTYPE", "EPS", "MOMENTUM", "Case", "select_cases", "Setup",
    "machine_info", "versions", "checked_runner", "run", "run_phase_1", "run_phase_2", "fmt_time",
    "header_lines", "plot", "table_header", "table_notes", "table_row", "write_json", "BUSY",
    "NOISY", "CaseResult", "PhaseTimes", "IMPLEMENTATIONS", "PEERS", "Runner", "Unavailable",
    "applies", "available_implementations", "FULL", "QUICK", "Settings", "Timing", "measure",
]
