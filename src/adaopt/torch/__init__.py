"""Drop-in ``torch.optim`` optimizers that run adaopt's rules.

``adaopt.torch.AdamW`` is a :class:`torch.optim.Optimizer` with torch's constructor
arguments and defaults, its ``state_dict`` layout (torch's own optimizers read it,
and it reads theirs), param groups, closures, hooks and every LR scheduler. The
update is adaopt's: on CPU the tensors are handed to the engine as zero-copy NumPy
views, where the fused multi-tensor kernel (or the reference rule) updates them in
place. Nothing here holds optimizer math.

What torch does not give:

* ``conventions=``, ``eps_in_sqrt=``, ``bias_correction=`` as in the NumPy frontend;
* ``state_dtype=``: bfloat16/float16 parameters keep float32 state by default;
* ``kahan=True`` (compensated summation: the rounding error of each bf16/fp16 update
  is kept in ``state["kahan_comp"]`` and added back) or ``stochastic_rounding=True``
  (bfloat16), for every optimizer, AdaGrad and RMSprop included;
* ``on_nonfinite="skip"`` (a step with a NaN/inf gradient changes nothing and is
  counted in ``skipped_steps``) or ``"raise"`` (names the parameter);
* ``load_state_dict`` keeps the saved state's dtypes (torch casts them to the
  parameter's dtype), matches parameters by name when both sides have names (torch
  matches by position), and never aliases the source's tensors.
"""

from __future__ import annotations

import inspect

from .. import registry
from .optimizer import Optimizer


def _optimizer_class(entry: registry.Family) -> type[Optimizer]:
    """adaopt.torch's class for a registry entry: torch.optim's name, arguments and defaults."""
    P = inspect.Parameter
    options = [P(n, P.KEYWORD_ONLY, default=d) for n, d in (
        ("conventions", "torch"), ("state_dtype", None), ("on_nonfinite", None), ("kahan", False),
        ("stochastic_rounding", False), ("backend", "auto"))]
    torch_name = entry.torch_name or entry.name
    cls = type(entry.name, (Optimizer,), {
        "entry": entry, "family": entry.key, "rule": entry.rule, "__module__": __name__, "__qualname__": entry.name,
        "__doc__": f"torch.optim.{torch_name}'s arguments and defaults, adaopt's rule "
                   f"(:mod:`{entry.rule.__name__}`).\n\n{entry.summary}",
    })
    cls.__signature__ = registry.signature(entry, torch=True, options=options)
    return cls


#: The optimizer classes, by registry key.
CLASSES: dict[str, type[Optimizer]] = {key: _optimizer_class(entry) for key, entry in registry.FAMILIES.items()}
globals().update({cls.__name__: cls for cls in CLASSES.values()})
globals().update({alias: CLASSES[e.key] for e in registry.FAMILIES.values() for alias in e.aliases})
__all__ = ["Optimizer", *(e.name for e in registry.FAMILIES.values()),
           *(a for e in registry.FAMILIES.values() for a in e.aliases)]
