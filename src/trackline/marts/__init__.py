"""Marts: retention groups (anchor + followers), history periods, exceptions, the cycle."""
