"""`trackline compare`: a legacy DW table against trackline's, with a pass/fail verdict."""

from trackline.compare.job import compare
from trackline.compare.outcome import ColumnDiff, CompareResult

__all__ = ["ColumnDiff", "CompareResult", "compare"]
