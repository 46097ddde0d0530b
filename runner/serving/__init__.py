"""Serving under load (``scenario=online``): arrivals, the load generator, the window."""
