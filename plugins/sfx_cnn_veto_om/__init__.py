"""om adapter for sfx-cnn-veto (registered through the sfx_cnn_veto entry-point group)."""
