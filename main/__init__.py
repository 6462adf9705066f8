"""serviceorders: an event-sourced engine for TMF641 service orders (composition root, settings, CLI)."""
