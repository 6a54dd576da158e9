"""The Scan tab's rooms, composed by :class:`app.ui.widgets.scan_panel.ScanPanel`.

``form`` is what to scan and how the running scan goes; ``results`` shows one
scan's ports and the compare table; ``history`` lists past scans and asks for
compares; ``formatting`` builds their words and rows from the core's results
with no widget at all. The panel itself stays in ``scan_panel`` (the app and
the tests import it from there): it runs the scan in a Textual worker and
passes the outcome between the rooms.
"""
