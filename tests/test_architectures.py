"""The paper's network, reproduced exactly (Table I)."""

import pytest

from sfx_cnn_veto.core.architectures import PAPER_TABLE_I, build_paper_model, trainable_parameters


@pytest.fixture(scope="module")
def paper():
    return build_paper_model((350, 350, 1))


def test_table_i_shapes_layer_by_layer(paper):
    layers = paper.layers[1:]  # skip the Input layer
    assert len(layers) == len(PAPER_TABLE_I)
    for layer, (kind, shape, params) in zip(layers, PAPER_TABLE_I):
        assert tuple(layer.output.shape[1:]) == shape, (layer.name, kind)
        trainable = sum(int(w.numpy().size) for w in layer.trainable_weights)
        assert trainable == params, (layer.name, kind)


def test_eleven_thousand_ninety_eight_trainable_parameters(paper):
    assert trainable_parameters(paper) == 11098


def test_sample_wise_batch_norm_is_along_rows(paper):
    bn1 = paper.get_layer("bn1_samplewise")
    assert bn1.axis in (1, [1])
    assert tuple(bn1.gamma.shape) == (344,)
