"""Leaderboard tables built from ``results_dir/leaderboard.csv``."""
