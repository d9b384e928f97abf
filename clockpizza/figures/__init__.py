"""Figures and the report, pure functions of the tables (torch-free)."""
