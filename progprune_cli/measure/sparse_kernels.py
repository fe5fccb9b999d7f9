"""Linear layers computed with a CSR sparse kernel, so zero weights are skipped for real (not only in theory)."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

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
    """A deep copy with every nn.Linear whose weight sparsity >= min_sparsity replaced by SparseLinear, and the
    replaced names (the root itself is named ""). The original model is untouched."""
    model = copy.deepcopy(model)
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and sparsity(module.weight.detach()) >= min_sparsity]
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
