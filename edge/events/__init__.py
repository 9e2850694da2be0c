"""Signed events: the only thing that leaves the terminal."""
