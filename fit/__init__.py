"""Predict, regress, test and report: the statistics on top of measured archives."""

from __future__ import annotations
