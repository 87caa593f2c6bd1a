"""Validation of every public argument, in one place: this package.

Each function checks one argument and returns it in the form the plans use. All of them run
before any buffer is written, so a failed call leaves everything the caller handed in as it
was. Messages name the offending argument. `core`: arrays, parameters, out, axes, scalars;
`images`: normalize_image; `adapters`: what fastnorm.dask and fastnorm.torch hand in.
"""
from .core import (  # noqa: F401
    NATIVE_DTYPES,
    FLOAT_DTYPES,
    INTEGER_DTYPES,
    native,
    is_float,
    is_integer,
    compute_dtype,
    array_input,
    stats_input,
    result_dtype,
    num_threads,
    real_scalar,
    eps,
    momentum,
    flag,
    positive_int,
    param,
    running_stat,
    running_stats,
    channel_affine,
    row_affine,
    normalized_shape,
    num_groups,
    out,
    axes,
    ddof)
from .images import (  # noqa: F401
    IMAGE_DTYPES,
    IMAGE_OUTPUT_DTYPES,
    IMAGE_MODES,
    IMAGE_LAYOUTS,
    ImageBatch,
    image_batch,
    choice,
    image_output_dtype,
    channel_values,
    swap_rb,
    no_constants_in_per_image_mode,
    image_scale,
    image_out)
from .adapters import (  # noqa: F401
    dask_array,
    split_every,
    tensor)
