"""DINOv2's ViT as a torch-fidelity feature extractor, built from Meta's released state_dict, read safely.

torch-fidelity 0.4.0 builds DINOv2 from torch.hub's code, fetched at run time, and cannot read it from a file;
no installed package holds that code (timm does, but torch-pruning imports timm, and with it torchvision, whenever
it is installed: two seconds more on every start of the command line). So the network is written out here, to
the letter of Meta's ``dinov2/models/vision_transformer.py`` for the released ViT-S/14, B/14 and L/14
(``dinov2_vits14_pretrain.pth``, ...): a 14x14 patch embedding, a class token, learned positional embeddings
for 518-pixel images interpolated to the input (bicubic, a 0.1-patch offset, no antialiasing, as the hub's
models do), pre-norm blocks (LayerNorm eps 1e-6, multi-head attention with a packed qkv, exact GELU MLP of 4x,
layer scale on both branches), a final LayerNorm; the feature is the normalised class token. Parameter names are
Meta's, and the file must hold exactly them. Preprocessing and features are torch-fidelity's DINOv2 ones (its
``forward``): resized to 224x224 (TF1-compatible bilinear), ImageNet normalisation, the class token (384-d for
ViT-S/14). ViT-g/14 (SwiGLU) and the variants with registers are not supported.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2
from torch_fidelity.helpers import text_to_dtype, vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from bench.engine.checkpoints import safe_torch_load

DINOV2_EXTRACTOR = "dinov2-state-dict"
HEAD_DIM = 64  # every released DINOv2 ViT: S/14 has 6 heads, B/14 12, L/14 16
NORM_EPS = 1e-6
INTERPOLATE_OFFSET = 0.1  # Meta's: scale factors (grid + 0.1) / trained grid, kept for their released numbers


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head dim)) v
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=NORM_EPS), Attention(dim, heads), LayerScale(dim)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=NORM_EPS), Mlp(dim, hidden), LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, patches, dim)


class DinoV2ViT(nn.Module):
    """DINOv2's ViT (no registers, MLP blocks): images (B, 3, H, W) -> the normalised class token (B, dim)."""

    def __init__(self, dim: int, depth: int, hidden: int, patch: int, trained_grid: int) -> None:
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + trained_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # masked-image training only; kept for strict loading
        self.blocks = nn.ModuleList(Block(dim, max(1, dim // HEAD_DIM), hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + self._positions(x.shape[1] - 1, width // self.patch, height // self.patch)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]

    def _positions(self, patches: int, grid_w: int, grid_h: int) -> torch.Tensor:
        """The positional embeddings for a (grid_w, grid_h) grid, interpolated from the trained one as Meta's
        ``interpolate_pos_encoding`` does."""
        trained = self.pos_embed.shape[1] - 1
        if patches == trained and grid_w == grid_h:
            return self.pos_embed
        side = int(math.sqrt(trained))
        grid = self.pos_embed[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        scale = ((grid_w + INTERPOLATE_OFFSET) / side, (grid_h + INTERPOLATE_OFFSET) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1]).to(self.pos_embed.dtype)
        return torch.cat([self.pos_embed[:, :1], grid], dim=1)


def dinov2_vit(state_dict: dict[str, torch.Tensor]) -> DinoV2ViT:
    """The ViT of Meta's DINOv2 ``state_dict`` (its sizes read from the tensors), loaded strictly."""
    vassert(not any(".mlp.w12." in key for key in state_dict), "ViT-g/14 (SwiGLU) is not supported: give S/B/L/14")
    vassert("register_tokens" not in state_dict, "DINOv2 with registers is not supported: give ViT-S/B/L/14")
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
    missing = [key for key in needed if key not in state_dict]
    vassert(not missing, f"not a DINOv2 state_dict: it lacks {', '.join(missing)}")
    trained_grid = math.isqrt(state_dict["pos_embed"].shape[1] - 1)
    vit = DinoV2ViT(
        dim=state_dict["cls_token"].shape[-1],
        depth=1 + max(int(key.split(".")[1]) for key in state_dict if key.startswith("blocks.")),
        hidden=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        patch=state_dict["patch_embed.proj.weight"].shape[-1],
        trained_grid=trained_grid,
    )
    vit.load_state_dict(state_dict)
    return vit


class StateDictDinoV2(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor, its network built here from a state_dict file."""

    def __init__(
        self, name, features_list, feature_extractor_weights_path=None, feature_extractor_internal_dtype=None, **kwargs
    ) -> None:
        FeatureExtractorBase.__init__(self, name, features_list)  # the parent's would load from torch.hub
        vassert(feature_extractor_weights_path is not None, f"{name} needs feature_extractor_weights_path")
        self.feature_extractor_internal_dtype = text_to_dtype(feature_extractor_internal_dtype, "float32")
        state_dict = safe_torch_load(Path(feature_extractor_weights_path))
        vassert(isinstance(state_dict, dict), f"{feature_extractor_weights_path} holds no state_dict")
        self.model = dinov2_vit(dict(state_dict))
        self.to(self.feature_extractor_internal_dtype)
        self.requires_grad_(False)
        self.eval()


if DINOV2_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:  # re-imports must not fail
    register_feature_extractor(DINOV2_EXTRACTOR, StateDictDinoV2)
