"""Separating a catalogue on Apache Beam (the ``[beam]`` extra): `songs` (one song on any Beam filesystem,
idempotently) and `pipeline` (the transforms). Beam is imported here only; ``separation/`` knows nothing of it."""
