"""What a run leaves on disk: the state folder and its lock and run record, the checkpoint, the event log."""
