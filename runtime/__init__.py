"""serviceorders: an event-sourced engine for TMF641 service orders.

This package is the composition root: settings, bootstrap, the CLI and edge translations.
"""
