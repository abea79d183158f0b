"""The lab: built-in problems, batched sweeps, plots and the report."""

from .problems import PROBLEMS, Problem, get_problem
