"""Tracing: a recorder of forks and waits (an instrument), its analysis and its exports.

Loaded only when a trace is taken, so that ``import asyncfork`` stays cheap.
The core never imports this package; it only calls the instruments installed.
"""
