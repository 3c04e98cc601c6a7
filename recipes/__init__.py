"""One-command recipes for real corpora: raw corpus -> features -> training -> evaluation with
AS-norm -> a results table (``results.md``, ``results.json``) in the run directory.

``python -m recipes.voxceleb``, ``recipes.librispeech``, ``recipes.cnceleb`` and ``recipes.kaldi``
(``--help`` for each). A recipe only prepares lists the corpus lacks and then runs the same
``train.py`` and ``eval.py`` a user would (`recipes._common` says why), so a run directory made by
a recipe is an ordinary one, and each stage can be re-run by hand with the commands it logs.
"""
