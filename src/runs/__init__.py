"""A run folder's life: made or resumed, joined by the jobs of one run, its folds marked, its summary written.

- ``naming``: the names in a run folder, and :func:`~src.runs.naming.output_folder`, the one function that
  picks a new run's folder (and ``predict.py``'s output folder);
- ``folder``: :class:`~src.runs.folder.RunFolder`, the verbs ``src.pipeline.run`` drives (open, join,
  prepared, kept / fold_done, finish, fail, pruned);
- ``status``: ``status.json`` and the per-attempt files the DDP ranks wait on;
- ``jobs``: the run's lock and its live jobs (several processes, one fold each, sharing one folder);
- ``folds``: fold names from ``splits.json``, ``fold_status.json``, which folds completed;
- ``resume``: whether a folder may be resumed (the saved config, a live job, the saved folds);
- ``summary``: ``summary.json`` over every completed fold;
- ``summarize``: the command ``python -m src.runs.summarize <run>``.
"""
