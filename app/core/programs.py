"""The built-in lab programs as the dashboard sees them: their names and the checks of
their arguments (the launch dialog validates its fields with them before anything runs).

The UI goes through here, not to ``app.labs`` itself: the labs are the bottom layer,
run as child processes, and the UI depends on the core only (an import contract).
"""

from __future__ import annotations

from app.labs import PROGRAMS, LabUsageError, validate, whole_number

__all__ = ["PROGRAMS", "LabUsageError", "validate", "whole_number"]
