"""The headless model: sockets, processes, scans. Never imports textual or rich."""
