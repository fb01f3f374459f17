"""The synthetic demo project (pyramidal SVS slides and annotations), generated on first use."""
