pytest_plugins = ["sfx_cnn_veto.testing"]
