"""Measuring trained models: the paper's metrics, the circles, the mechanism figures' data."""
