"""Low-level kernels: the selective scan (reference, chunked parallel, mamba-ssm's CUDA kernel).

Import from the submodule (``from behave.ops.selective_scan import selective_scan``). Nothing is
re-exported here: a package attribute ``selective_scan`` (the function) would shadow the
submodule of the same name for ``import behave.ops.selective_scan as ...``.
"""
