"""Callbacks that attach an adaopt :class:`~adaopt.diagnostics.Monitor` where people train.

* :mod:`adaopt.integrations.lightning`: ``DiagnosisCallback`` for Lightning's ``Trainer``
  (``pip install 'adaopt[lightning]'``);
* :mod:`adaopt.integrations.transformers`: ``DiagnosisCallback`` for Hugging Face's
  ``Trainer`` (``pip install 'adaopt[transformers]'``).

Each module imports its trainer package when it is imported itself, not before (``import
adaopt`` never does); both share :class:`~._watch.Watch`.
"""
