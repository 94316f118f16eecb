"""Side jobs beside the 15-minute cycle (DESIGN §8). Built so far: `reconcile`."""

from trackline.jobs.reconcile import ReconcileResult, reconcile

__all__ = ["ReconcileResult", "reconcile"]
