"""The doctor's prescription in the vocabulary of the tool the run came from.

Hugging Face ``TrainingArguments``, LLaMA-Factory YAML keys, Lightning
``Trainer`` and callback arguments, Keras ``fit``/optimizer/callback
arguments, Ultralytics ``train`` arguments.
"""

from __future__ import annotations

from paramdoctor.vocab.terms import Term
from paramdoctor.vocab.translate import ToolChange, supported_tools, translate_changes

__all__ = ["Term", "ToolChange", "supported_tools", "translate_changes"]
