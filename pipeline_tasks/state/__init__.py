"""What a run leaves on disk: the state folder and its lock and run record, the checkpoint, the
event log, and the engine's files in each output folder (lock, what was there before)."""
