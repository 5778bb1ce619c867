"""Experiments: one folder per method, each with main.py and configs/."""
