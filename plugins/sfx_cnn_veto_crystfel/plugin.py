"""Hook implementations of the crystfel adapter."""
