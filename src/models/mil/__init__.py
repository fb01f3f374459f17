"""Multiple-instance learning models: (batch, tiles, features) + mask → one output per outcome (+ attention).

One module per model (``attention_mil``, ``clam_sb``, ``transmil``, ``mean_pool``), each a ``model=`` option;
:mod:`src.models.mil.base` holds what they share (the tile embedding, clinical fusion after pooling, the heads,
masked softmax), so each model module holds only its pooling.
"""
