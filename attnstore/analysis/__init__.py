"""Clustering, SVMs, dominant literals and pathways over stored attention rows."""
