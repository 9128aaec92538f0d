"""Information discarding (arXiv 1906.04109): the runner (`runner.py`: CLI options, `main`, `demo`, `claims`) and the claims
(`verdicts.py`)."""
