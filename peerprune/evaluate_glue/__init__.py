"""peerprune's GLUE metric as an `evaluate` module (see evaluate_glue.py)."""
