"""OM adapter for sfx-cnn-veto.

- :mod:`sfx_cnn_veto_om.processing`: ``CnnVetoCrystallographyProcessing``, OM's
  crystallography monitor with a CNN veto step (imports OM).
- :mod:`sfx_cnn_veto_om.launcher`: the ``sfx-om-monitor`` console script.
- :mod:`sfx_cnn_veto_om.config`, :mod:`sfx_cnn_veto_om.stats`: the ``cnn_veto``
  group and the collector's counts (no OM import).
- :mod:`sfx_cnn_veto_om.example_data`: example frames and a tiny model for the example (examples/om/run.sh) and tests.

Importing this package imports neither OM nor TensorFlow.
"""

PROCESSING_LAYER = "sfx_cnn_veto_om.processing.CnnVetoCrystallographyProcessing"
