"""`trackline compare`: a legacy DW table against trackline's, with a pass/fail verdict."""

from trackline.compare.job import ColumnDiff, CompareResult, compare

__all__ = ["ColumnDiff", "CompareResult", "compare"]
