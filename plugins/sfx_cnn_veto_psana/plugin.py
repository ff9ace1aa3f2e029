"""Hook implementations of the psana adapter."""
