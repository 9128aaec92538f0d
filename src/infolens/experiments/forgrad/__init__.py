"""FORGrad (arXiv 2307.09591): the runner (`runner.py`: CLI options, `main`, `demo`, `claims`) and the claims
(`verdicts.py`)."""
