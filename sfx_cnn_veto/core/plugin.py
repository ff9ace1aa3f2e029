"""Built-in steps, architectures and backends, registered as any plugin's would be."""

from __future__ import annotations

from sfx_cnn_veto import hookimpl
from sfx_cnn_veto.core import architectures, crop, normalize
from sfx_cnn_veto.types import ArchitectureSpec, BackendSpec, StepSpec


@hookimpl(trylast=True)
def sfxveto_preprocessing_steps():
    return [
        StepSpec("crop", "centre", crop.crop, "center crop around the beam center (paper: 350x350)"),
        StepSpec("normalize", "standardize", normalize.standardize, "per-frame (x - mean) / std (the paper's)"),
        StepSpec("normalize", "robust", normalize.robust, "signed log of (x - median) / (1.4826 MAD): gain/background robust"),
        StepSpec("normalize", "none", normalize.none, "float32 cast only"),
        StepSpec("normalize", "despeckle", normalize.despeckle,
                 "isolated-pixel removal (hot pixels, zingers), then robust: the default pipeline's"),
        StepSpec("normalize", "despike", normalize.despike,
                 "removal of pixels > k (20) noise scales above all 8 neighbours only (weak 1-px spots kept), "
                 "then robust"),
    ]


@hookimpl(trylast=True)
def sfxveto_architectures():
    return [
        ArchitectureSpec(
            name="paper",
            build=architectures.build_paper_model,
            input_shape=(350, 350, 1),
            description="Li 2018 Table I: 18 layers, 11,098 trainable parameters",
            default_normalize="standardize",
        ),
        ArchitectureSpec(
            name="veto",
            build=architectures.build_veto_model,
            input_shape=(350, 350, 1),
            description="default: early max-pooling, 3 small convs, global max+avg pooling (translation invariant)",
            default_normalize="despeckle",
        ),
        ArchitectureSpec(
            name="veto_fr",
            build=architectures.build_veto_fr_model,
            input_shape=(350, 350, 1),
            description="veto with a full-resolution 3x3 convolution (4 filters) before the first max-pooling",
            default_normalize="despeckle",
        ),
    ]


def _create_keras(model, options):
    from sfx_cnn_veto.core.backends import create_keras

    return create_keras(model, options)


def _create_numba(model, options):
    from sfx_cnn_veto.core.fused import create_numba

    return create_numba(model, options)


@hookimpl(trylast=True)
def sfxveto_backends():
    return [
        BackendSpec("keras", _create_keras, "tf.function, fixed input signature (oneDNN on)"),
        BackendSpec("numba", _create_numba,
                    "fused compiled conv/BN/ReLU/pool kernels from the Keras weights (needs numba; checked against Keras at load)"),
    ]
