"""Hook implementations of the om adapter."""
