"""Torch tensors as NumPy arrays and back, and the checks that an address table still holds.

The array path hands CPU tensors to the engine as zero-copy NumPy views; a fused kernel
then reads and writes through their addresses, so the plan records where each tensor's
elements are (:func:`layout`, :func:`extent`) and compares it every step.
"""

from __future__ import annotations

import operator

import numpy as np
import torch

from .. import dtypes

TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32,
               "float16": torch.float16, "bfloat16": torch.bfloat16}


def real(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as its real view (a last axis of 2: real and imaginary parts), as
    torch.optim steps complex parameters; any other tensor as it is."""
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


def is_sharded(t) -> bool:
    """Whether ``t`` is a DTensor (FSDP2's ``fully_shard``, tensor parallelism)."""
    return hasattr(type(t), "to_local")


def local(t):
    """A DTensor's local shard (a plain tensor sharing its memory); any other tensor as it is.
    The optimizer's update is elementwise, so each rank steps its shard alone."""
    return t.to_local() if hasattr(type(t), "to_local") else t


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy array sharing ``t``'s memory (a DTensor's local shard; bfloat16 via ml_dtypes;
    complex as its real view)."""
    t = real(local(t).detach())
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(dtypes.as_dtype("bfloat16"))
    return t.numpy()


def grad_view(g: torch.Tensor) -> np.ndarray:
    """A gradient as a NumPy view; gradients rarely require grad, so skip the detach."""
    if g.requires_grad or g.dtype == torch.bfloat16 or g.is_complex():
        return numpy_view(g)
    return g.numpy()


def from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def numpy_dtype(torch_dtype) -> str:
    """The dtype name adaopt uses for a torch dtype (complex: its parts'); an unsupported one
    is refused."""
    torch_dtype = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(torch_dtype, torch_dtype)
    for name, t in TORCH_DTYPE.items():
        if t == torch_dtype:
            return name
    raise TypeError(f"parameters of dtype {torch_dtype} are not supported; use one of "
                    f"{', '.join(TORCH_DTYPE)}")


data_ptr, size, numel = torch.Tensor.data_ptr, torch.Tensor.size, torch.Tensor.numel
contiguous, is_neg, dtype_of = torch.Tensor.is_contiguous, torch.Tensor.is_neg, operator.attrgetter("dtype")


def layout(tensors: list) -> tuple:
    """Where each parameter's elements are: address, shape, and whether they are contiguous
    (``.data =``, ``set_``, ``resize_``, ``t_()`` change it). A kernel's address table is
    valid while this is unchanged."""
    return list(map(data_ptr, tensors)), list(map(size, tensors)), list(map(contiguous, tensors))


def extent(tensors: list) -> tuple:
    """Address and size of each state tensor: what a kernel needs to stay inside it (state
    is made contiguous by adaopt, and another layout of the same size is harmless to it
    unless someone transposes a square buffer in place)."""
    return list(map(data_ptr, tensors)), list(map(numel, tensors))
