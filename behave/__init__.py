"""behave: train, review, serve and explain sequence models of behavior."""

__version__ = "0.1.0"
