; A single 700x700 panel (75 um pixels) for the simulated demo frames.
; Frames are read by OM's EigerFilesDataRetrieval from entry/data/data (N, ss, fs).
adu_per_photon = 1
res = 13333.3
clen = 0.1
photon_energy = 9000

data = /entry/data/data
dim0 = %
dim1 = ss
dim2 = fs

p0/min_fs = 0
p0/max_fs = 699
p0/min_ss = 0
p0/max_ss = 699
p0/corner_x = -350.0
p0/corner_y = -350.0
p0/fs = +1.0x
p0/ss = +1.0y
