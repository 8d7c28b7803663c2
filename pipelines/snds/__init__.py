"""Reading real (or simulated) SNDS extracts: discovery, formats, typed-as-text reading, stacking, joins.

Stages import this toolkit; it imports no stage. See ``ingest.ingest_table`` for the entry point.
"""
