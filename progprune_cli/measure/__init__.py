"""Torch-level measurements of a model: parameter counts, MACs, latency, size on disk, sparse Linear kernels."""

from progprune_cli.measure.latency import latency_report, latency_reports, measure_interleaved, measure_latency
from progprune_cli.measure.macs import layer_table, macs_summary
from progprune_cli.measure.params import count_params
from progprune_cli.measure.sizes import file_size, load_sparse, save_dense, save_sparse
from progprune_cli.measure.sparse_kernels import SparseLinear, max_abs_diff, sparsify_linears

__all__ = [
    "SparseLinear",
    "count_params",
    "file_size",
    "latency_report",
    "latency_reports",
    "measure_interleaved",
    "layer_table",
    "load_sparse",
    "macs_summary",
    "max_abs_diff",
    "measure_latency",
    "save_dense",
    "save_sparse",
    "sparsify_linears",
]
