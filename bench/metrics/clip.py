"""CLIP's image encoder as a torch-fidelity feature extractor, built from a state_dict file read safely.

torch-fidelity's own CLIP extractor reads OpenAI's TorchScript archive with ``torch.jit.load``, which this suite
does not run on files it is handed; this one reads the same weights saved as a plain state_dict
(``torch.load(weights_only=True)``) and builds the same network with torch-fidelity's ``build_model``, which infers
the architecture (ViT-B/32, RN50, ...) from the tensors' names and shapes. Preprocessing and features are
torch-fidelity's: resized to the encoder's resolution, CLIP's normalisation, the projected image embedding
(512-d for ViT-B/32). Turn OpenAI's archive into such a file once, on a machine that trusts it:
``torch.save(torch.jit.load("ViT-B-32.pt", map_location="cpu").state_dict(), "clip-vit-b-32.pt")``.
"""

from __future__ import annotations

from pathlib import Path

from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP, build_model
from torch_fidelity.helpers import text_to_dtype, vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from bench.engine.checkpoints import safe_torch_load

CLIP_EXTRACTOR = "clip-state-dict"


class StateDictCLIP(FeatureExtractorCLIP):
    """torch-fidelity's CLIP extractor, its weights read from a state_dict file instead of a TorchScript archive."""

    def __init__(
        self, name, features_list, feature_extractor_weights_path=None, feature_extractor_internal_dtype=None, **kwargs
    ) -> None:
        FeatureExtractorBase.__init__(self, name, features_list)  # the parent's would look the name up for a URL
        vassert(feature_extractor_weights_path is not None, f"{name} needs feature_extractor_weights_path")
        self.feature_extractor_internal_dtype = text_to_dtype(feature_extractor_internal_dtype, "float32")
        state_dict = safe_torch_load(Path(feature_extractor_weights_path))
        vassert(isinstance(state_dict, dict), f"{feature_extractor_weights_path} holds no state_dict")
        self.model = build_model(dict(state_dict), self.feature_extractor_internal_dtype)
        self.resolution = self.model.visual.input_resolution
        self.requires_grad_(False)


if CLIP_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:  # re-imports must not fail
    register_feature_extractor(CLIP_EXTRACTOR, StateDictCLIP)
