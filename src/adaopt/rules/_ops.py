"""The one elementwise function the rules need beyond arithmetic operators."""

import numpy as np


def maximum(a, b):
    """Elementwise maximum of NumPy arrays or numbers, torch tensors, or the tracer's symbols."""
    if type(a).__module__.startswith("torch"):
        import torch

        return torch.maximum(a, b) if torch.is_tensor(b) else torch.clamp_min(a, b)
    return np.maximum(a, b)
