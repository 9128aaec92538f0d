"""One runner per paper protocol, each in ``experiments/<paper>/runner.py`` (the papers are listed in
:mod:`infolens.papers`); the shared set-up and ending of a run (:func:`start_run`, :func:`end_run`, the
common CLI options and the declared option kinds) live in :mod:`.common`."""

from .common import (KINDS, RunSetup, check_spatial, common_arguments, common_options, default_data, end_run,
                     runner_options, slug, start_run, validate_common, validate_options)

__all__ = ["KINDS", "RunSetup", "check_spatial", "common_arguments", "common_options", "default_data", "end_run",
           "runner_options", "slug", "start_run", "validate_common", "validate_options"]
