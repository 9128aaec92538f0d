"""What do deep networks like to see? (arXiv 1803.08337): the runner (`runner.py`: CLI options, `main`, `demo`, `claims`) and the claims
(`verdicts.py`)."""
