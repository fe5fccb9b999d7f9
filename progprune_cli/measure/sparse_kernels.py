"""Linear layers computed with a CSR sparse kernel, so zero weights are skipped for real (not only in theory)."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from progprune_cli.measure.matrices import read_directly
from progprune_cli.measure.modes import evaluating


class SparseLinear(nn.Module):
    """y = x @ W^T + b with W held as a torch.sparse_csr tensor; inference only (no gradient to the weight)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        if weight.layout != torch.sparse_csr:
            with warnings.catch_warnings():  # torch flags all of CSR as beta on first use; nothing to act on
                warnings.simplefilter("ignore", UserWarning)
                weight = weight.detach().to_sparse_csr()
        # Buffers, not parameters: they move with .to() and are saved, but an optimizer never sees them.
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        return cls(linear.weight, linear.bias)

    def __deepcopy__(self, memo: dict) -> SparseLinear:
        # Tensor.__deepcopy__ cannot reach a CSR tensor's storage, so nn.Module's default deepcopy fails.
        # Rebuild from clones instead (hooks registered on this instance are not carried over).
        clone = SparseLinear(self.weight.clone(), self.bias)
        clone.train(self.training)
        return clone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        # CSR times dense is the supported (and MKL-backed) order, hence W @ x^T rather than x @ W^T.
        y = (self.weight @ rows.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight._nnz()}"


def sparsity(tensor: torch.Tensor) -> float:
    """Fraction of entries that are exactly zero."""
    return 1.0 - int(torch.count_nonzero(tensor)) / tensor.numel()


def sparsify_linears(model: nn.Module, min_sparsity: float) -> tuple[nn.Module, list[str]]:
    """A deep copy with every nn.Linear whose weight sparsity >= min_sparsity replaced by SparseLinear (except those
    their owner never calls, e.g. nn.MultiheadAttention's out_proj), and the replaced names (the root itself is named
    ""). The original model is untouched."""
    model = copy.deepcopy(model)
    skipped = read_directly(model)  # an attention reads out_proj.weight as a tensor: a CSR one breaks it
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and module not in skipped
              and sparsity(module.weight.detach()) >= min_sparsity]
    if chosen == [""]:  # the model is itself one Linear: there is no parent to swap it in
        return SparseLinear.from_linear(model), chosen
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, SparseLinear.from_linear(getattr(parent, child)))
    return model, chosen


def max_abs_diff(a: nn.Module, b: nn.Module, inputs: torch.Tensor) -> float:
    """Largest elementwise difference between two models' outputs on the same inputs (eval mode, no grad)."""
    with evaluating(a), evaluating(b), torch.inference_mode():
        return float((a(inputs) - b(inputs)).abs().max())


# --- 2:4 semi-structured kernels (strategy.pattern=2:4, evaluate.sparse_kernels=true) -------------------------
# Written from the torch 2.14 sources of torch.sparse.semi_structured; they need an Ampere-or-newer GPU, so on a
# machine without one only the "absent, because ..." path runs.

SEMI_STRUCTURED_DTYPE = torch.float16  # the sparse tensor cores take fp16/bf16 (and int8); fp16 keeps more digits
MIN_CAPABILITY = (8, 0)  # Ampere: the first GPUs with 2:4 sparse tensor cores


def semi_structured_unavailable(device: torch.device) -> str | None:
    """Why torch's 2:4 semi-structured kernels cannot run on `device`, in one line; None when they can."""
    need = f"torch's 2:4 semi-structured kernels need a CUDA GPU of compute capability {MIN_CAPABILITY[0]}.0 or newer"
    if device.type != "cuda":
        return f"{need} and this run evaluates on {device.type}"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        return (f"{need} and this GPU ({torch.cuda.get_device_name(device)}) is compute capability "
                f"{capability[0]}.{capability[1]}")
    return None


def is_two_four(weight: torch.Tensor) -> bool:
    """At most 2 nonzeros in every 4 consecutive entries of each row (what the 2:4 compression assumes)."""
    rows, cols = weight.shape
    return cols % 4 == 0 and bool((weight.reshape(rows, -1, 4) != 0).sum(-1).le(2).all())


def _semi_structured_class() -> type:
    """The SparseSemiStructuredTensor subclass `to_sparse_semi_structured` converts to (cuSPARSELt unless forced)."""
    from torch.sparse import SparseSemiStructuredTensor, SparseSemiStructuredTensorCUSPARSELT
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    forced = SparseSemiStructuredTensor._FORCE_CUTLASS
    return SparseSemiStructuredTensorCUTLASS if forced else SparseSemiStructuredTensorCUSPARSELT


def semi_structured_shape_ok(weight: torch.Tensor, dtype: torch.dtype = SEMI_STRUCTURED_DTYPE) -> bool:
    """Both dims at least, and a multiple of, the backend's minimum block for `dtype` (torch checks the same and
    raises otherwise; checking first lets an odd-shaped layer stay dense instead)."""
    limits = getattr(_semi_structured_class(), "_DTYPE_SHAPE_CONSTRAINTS", {}).get(dtype)
    rows, cols = (32, 64) if limits is None else (limits.sparse_min_rows, limits.sparse_min_cols)  # CUTLASS fp16's
    out_features, in_features = weight.shape
    return out_features % rows == 0 and in_features % cols == 0 and out_features >= rows and in_features >= cols


class SemiStructuredLinear(nn.Module):
    """y = x @ W^T + b with W compressed by `torch.sparse.to_sparse_semi_structured` (CUDA, fp16/bf16, 2:4)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.out_features, self.in_features = linear.weight.shape
        # A plain attribute, not a parameter or buffer: Module.to() and state_dict() never touch it (torch's
        # semi-structured tensor moves only to the CPU, and only as dense); it stays on the GPU it was made on.
        with warnings.catch_warnings():  # torch flags the semi-structured API as a prototype; nothing to act on
            warnings.simplefilter("ignore", UserWarning)
            self.weight_2_4 = to_sparse_semi_structured(linear.weight.detach().contiguous())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's dispatch for F.linear on this tensor flattens the leading dims and pads the rows as the kernel needs.
        return nn.functional.linear(x, self.weight_2_4, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pattern=2:4"


class Cast(nn.Module):
    """`module` run in `dtype`: inputs cast to it, outputs back to float32, so it evaluates like the other rows."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.dtype)).float()


def semi_structured_linears(model: nn.Module,
                            dtype: torch.dtype = SEMI_STRUCTURED_DTYPE) -> tuple[nn.Module, nn.Module, list[str]]:
    """A copy of `model` (on its CUDA device) in `dtype` with each 2:4 nn.Linear of a supported shape replaced by
    SemiStructuredLinear; the same copy kept dense (the fair reference: the same dtype); and the replaced names.
    The original model is untouched."""
    dense = Cast(copy.deepcopy(model).to(dtype).eval(), dtype)
    dense.requires_grad_(False)  # inference only: evaluation then records no autograd graph through the kernels
    sparse = copy.deepcopy(dense)
    skipped = read_directly(sparse)
    chosen = [name for name, module in sparse.module.named_modules()
              if isinstance(module, nn.Linear) and module not in skipped and is_two_four(module.weight.detach())
              and semi_structured_shape_ok(module.weight, dtype)]
    if chosen == [""]:  # the model is itself one Linear
        return Cast(SemiStructuredLinear(sparse.module), dtype), dense, chosen
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = sparse.module.get_submodule(parent_name)
        setattr(parent, child, SemiStructuredLinear(getattr(parent, child)))
    return sparse, dense, chosen
