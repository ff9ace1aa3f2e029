; One 700x700 panel (110 um pixels, 80 mm) as OM reads the demo frames: the
; simulator's CSPAD-like detector (sfx_cnn_veto.simulate, run90) seen as one
; panel; its gaps and beamstop are in the bad-pixel map (run/data/mask.h5).
; OM's EigerFilesDataRetrieval reads frames from entry/data/data (N, ss, fs).
photon_energy = 9500
adu_per_photon = 8
clen = 0.08
res = 9090.91

data = /entry/data/data
dim0 = %
dim1 = ss
dim2 = fs

p0/min_fs = 0
p0/max_fs = 699
p0/min_ss = 0
p0/max_ss = 699
p0/corner_x = -350
p0/corner_y = -350
p0/fs = +1.0x
p0/ss = +1.0y
