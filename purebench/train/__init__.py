"""Training entry points for the trainable defenses (``python -m purebench.train``)."""
