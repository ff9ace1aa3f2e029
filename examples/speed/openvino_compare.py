"""OpenVINO against the project's backends (keras, numba) on the paper's and the default network; writes a JSON.

Issue 18 asked to try OpenVINO (a PyPI wheel, CPU-tuned for small CNNs) side by
side and keep it only if it wins and reproduces Keras. It is not a dependency:
install it apart, e.g. ``pip install --target /tmp/ovpkg openvino`` (then delete
the ``numpy`` it brings along, which would shadow the project's), and run::

    PYTHONPATH=.:plugins:/tmp/ovpkg python examples/speed/openvino_compare.py docs/openvino.json

Untrained networks (timings do not depend on the weights' values), random
inputs; the three runtimes interleaved, twice, in one process, so ratios are
comparable on a shared machine. Reported: ms a frame at batch 1 and batch 64
(medians), and OpenVINO's largest |score - keras score| on 64 inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def median_ms(func, x: np.ndarray, repeats: int) -> float:
    func(x)
    func(x)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(x)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)) * 1e3 / len(x)


def openvino_predict(keras_model, shape: tuple[int, int], threads: int):
    """A batch -> hit-probability function from OpenVINO's CPU plugin (f32, latency hint)."""
    import openvino as ov

    model = ov.convert_model(keras_model, input=[(-1, shape[0], shape[1], 1)])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                      "PERFORMANCE_HINT": "LATENCY",
                                                      "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda x: np.asarray(request.infer([x])[0])[:, 1]


def compare(arch: str, workdir: str, threads: int) -> dict:
    from sfx_cnn_veto.bench.inputs import make_model
    from sfx_cnn_veto.core.pipeline import Veto

    path = make_model(os.path.join(workdir, f"{arch}.keras"), arch)
    keras_veto = Veto.load(path, backend="keras", batch_size=64, threads=threads)
    numba_veto = Veto.load(path, backend="numba", batch_size=64, threads=threads)
    shape = tuple(keras_veto.crop_shape)
    start = time.perf_counter()
    ov_predict = openvino_predict(keras_veto.model.keras_model, shape, threads)
    x64 = np.random.default_rng(0).normal(0, 1, (64, *shape, 1)).astype(np.float32)
    out = {"architecture": arch, "openvino_convert_s": time.perf_counter() - start,
           "openvino_max_abs_diff_vs_keras": float(np.max(np.abs(ov_predict(x64) - keras_veto.predict_batch(x64))))}
    runtimes = {"keras": keras_veto.predict_batch, "numba": numba_veto.predict_batch, "openvino": ov_predict}
    for _ in range(2):
        for name, func in runtimes.items():
            out.setdefault(f"{name}_batch1_ms", []).append(median_ms(func, x64[:1], 100))
            out.setdefault(f"{name}_batch64_ms_per_frame", []).append(median_ms(func, x64, 8))
    return out


def main(path: str) -> None:
    import tempfile

    import openvino

    from sfx_cnn_veto.bench.inputs import default_architecture
    from sfx_cnn_veto.bench.timing import machine_info

    result = {"machine": machine_info(), "openvino": openvino.__version__}
    threads = result["machine"]["cores_available"]
    with tempfile.TemporaryDirectory() as workdir:
        for label, arch in (("paper", "paper"), ("default", default_architecture())):
            result[label] = compare(arch, workdir, threads)
            print(label, json.dumps(result[label]), flush=True)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "openvino.json")
