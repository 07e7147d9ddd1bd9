"""The reliability suite: load, faults, bad input and security, with measured figures.

``make reliability`` (``python -m tests.reliability``) runs it all and prints a table.
"""
