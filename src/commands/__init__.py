"""What the entry points at the top of the repository run, when it is not training or prediction.

``extract.py`` composes ``conf/extract.yaml`` and calls :func:`src.commands.extract.run`. Modules here import
neither torch nor torchvision: a job that only cuts tiles starts without them.
"""
