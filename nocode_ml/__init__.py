"""Command-line entry point of No Code ML (``nocode-ml``); the library lives in ``pipelines``."""
