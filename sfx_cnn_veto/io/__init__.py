"""Frames in: CrystFEL lists, HDF5/CXI files, every single-frame format fabio reads."""
