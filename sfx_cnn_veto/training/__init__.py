"""Labelling, training and evaluation: the paper's workflow, and the robust default pipeline."""
