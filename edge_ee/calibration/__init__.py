"""Calibration: choosing exit thresholds with a stated risk, and checking them at run time (``audit``)."""
