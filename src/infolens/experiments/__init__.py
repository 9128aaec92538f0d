"""One runner per paper protocol, each in ``experiments/<paper>/runner.py``; the shared set-up and ending
of a run (:func:`start_run`, :func:`end_run`, the common CLI options) live in :mod:`.common`."""

from .common import (COUNT_OPTIONS, DEMO_ORDER, LIST_OPTIONS, POSITIVE_OPTIONS, RUNNERS, RunSetup, check_spatial,
                     common_arguments, default_data, end_run, slug, start_run, validate_common)

__all__ = ["COUNT_OPTIONS", "DEMO_ORDER", "LIST_OPTIONS", "POSITIVE_OPTIONS", "RUNNERS", "RunSetup", "check_spatial",
           "common_arguments", "default_data", "end_run", "slug", "start_run", "validate_common"]
