"""Reference solutions of notebook 06's exercises (for teachers; the tests check them)."""
from dataclasses import replace


def uniform(base):
    """06.1: the variant's name, and the one option it changes."""
    return replace(base, variant="uniform", allocation="uniform")


# 06.2: the ablations whose changed options act before the head choice
NEW_CHOICE = ["lagrangian", "one-per-layer", "uniform"]
