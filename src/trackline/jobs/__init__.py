"""Side jobs beside the 15-minute cycle. Built so far: `reconcile`."""

from trackline.jobs.reconcile import ReconcileResult, reconcile

__all__ = ["ReconcileResult", "reconcile"]
