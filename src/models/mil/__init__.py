"""Multiple-instance learning models: (batch, tiles, features) + mask → one output per outcome (+ attention).

One module per model (``attention_mil``, ``clam_sb``, ``transmil``, ``mean_pool``), each a ``model=`` option;
:mod:`src.models.mil.base` holds what they share (clinical fusion after pooling, the heads, masked softmax).
"""
