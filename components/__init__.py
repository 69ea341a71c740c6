"""Conveyor's stages. Importing the package makes an uncaught ConveyorError end any process (a KFP
task above all) with one structured line and its class's exit code instead of a traceback
(components.common.entry)."""

from components.common.entry import report_uncaught_failures

report_uncaught_failures()
