"""Fast paths: fused loops generated from the rules (numba).

:mod:`.codegen` records a rule as straight-line code; :mod:`.fused` wraps that
code in a multi-tensor loop and compiles it; :mod:`.lowp` converts float16 and
bfloat16 elements. Nothing here is imported by ``import adaopt``; the NumPy
frontend loads it on its first step when its backend allows.
"""
