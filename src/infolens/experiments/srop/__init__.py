"""Spectral roll-off points (arXiv 2102.00369): the runner (`runner.py`: CLI options, `main`, `demo`, `claims`) and the claims
(`verdicts.py`)."""
