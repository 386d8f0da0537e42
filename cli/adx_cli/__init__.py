"""The ``adx`` command: the composition root that wires the roles together.

It is the one package that imports all the others: ``adx api``, ``adx worker NAME`` and
``adx operator`` are the container entrypoints, ``adx dev`` runs the whole stack locally.
"""
