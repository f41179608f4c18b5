"""Evaluation: threat models, the runner and result files."""
