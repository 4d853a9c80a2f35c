"""The real weight files people publish (../shared/peers/weights): what each loads as.

Skips when the folder is absent (it is not part of the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sisr.errors import WeightsError
from sisr.hub.load import load_detected

PEERS = Path(
    os.environ.get(
        "SISR_PEERS_WEIGHTS", Path(__file__).resolve().parents[3] / "shared" / "peers" / "weights"
    )
)

# file -> (arch, scale or None when the tensors do not fix it, key layout, hparams subset)
EXPECTED = {
    "fangzhouye_srcnn_x3.pth": ("srcnn", 3, "conv123", {"y_channel": True}),
    "fangzhouye_vdsr_x3.pth": ("vdsr", 3, "twtygqyy", {"bias": False, "y_channel": True}),
    "leftthomas_srgan_netG_epoch_4_100.pth": (
        "srresnet",
        4,
        "leftthomas",
        {"blocks": 5, "output": "tanh"},
    ),
    "nhatthanh_ESPCN-x2.pt": ("espcn", 2, "conv_n", {"color_space": "ycbcr"}),
    "nhatthanh_ESPCN-x3.pt": ("espcn", 3, "conv_n", {}),
    "nhatthanh_ESPCN-x4.pt": ("espcn", 4, "conv_n", {}),
    "nhatthanh_FSRCNN-x2.pt": ("fsrcnn", 2, "nhatthanh", {"maps_activation": "last"}),
    "nhatthanh_SRCNN-915.pt": (
        "srcnn",
        None,
        "nhatthanh",
        {"kernels": [9, 1, 5], "padding": "valid", "color_space": "ycbcr"},
    ),
    "nhatthanh_SRCNN-955.pt": (
        "srcnn",
        None,
        "nhatthanh",
        {"kernels": [9, 5, 5], "padding": "valid", "color_space": "ycbcr"},
    ),
    "lornatang_srcnn_x3.pth": (
        "srcnn",
        None,
        "by-shape",
        {"kernels": [9, 1, 5], "y_channel": True},
    ),
    "nhatthanh_VDSR.pt": ("vdsr", None, "nhatthanh", {"bias": True, "depth": 20}),
    "imdn_IMDN_x2.pth": (
        "imdn",
        2,
        "native",
        {"num_features": 64, "num_blocks": 6, "distilled_channels": 16},
    ),
    "njulj_RFDN_AIM.pth": (
        "rfdn",
        4,
        "official",
        {"num_features": 50, "num_blocks": 4, "esa_channels": 12},
    ),
    "carn_m.pth": (
        "carn",
        None,
        "official",
        {"multi_scale": True, "efficient": True, "shared": True, "groups": 4},
    ),
    "pan_PANx4_DF2K.pth": (
        "pan",
        4,
        "official",
        {"num_features": 40, "up_features": 24, "num_blocks": 16},
    ),
    "ntire2022_team04_rlfn.pth": (
        "rlfn",
        4,
        "ntire2022",
        {"feature_channels": 46, "mid_channels": 48, "num_blocks": 4},
    ),
    "ntire2022_team18_bsrn.pth": (
        "bsrn",
        4,
        "ntire2022",
        {"feature_channels": 48, "num_blocks": 5, "variant": "ntire2022"},
    ),
    "safmn_ntire2023_team15_SAFMN.pth": (
        "safmn",
        4,
        "ntire2023",
        {"feature_channels": 36, "num_blocks": 8},
    ),
    "ntire2024_team38_span_ch28_slim.pth": ("span", 4, "deploy", {"feature_channels": 28}),
    "ntire2024_team39_spantiny_ch26_slim.pth": ("span", 4, "deploy", {"feature_channels": 26}),
    "omergal_model_best.pt": ("edsr", 1, "native", {"num_blocks": 32, "num_features": 32}),
    "realesr-animevideov3_resaved.pth": ("compact", 4, "realesrgan", {"num_conv": 16}),
    "yjn870_fsrcnn_x2.pth": ("fsrcnn", 2, "yjn870", {"deconv_geometry": "reference"}),
}


def _peer(name: str) -> Path:
    path = PEERS / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared peer weights folder is not beside the repo)")
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_peer_file_is_detected(name: str) -> None:
    arch, scale, layout, hp = EXPECTED[name]
    found = load_detected(_peer(name), scale=scale or 2)
    assert found.match.arch == arch and found.match.layout == layout
    assert found.model.scale == (scale or 2)
    assert found.match.scale == (scale if found.scale_from == "tensors" else None)
    for key, value in hp.items():
        assert found.model.hparams[key] == value, key


def test_peer_files_that_cannot_load_say_why() -> None:
    with pytest.raises(WeightsError, match=r"not a readable PyTorch checkpoint .*damaged"):
        load_detected(_peer("leftthomas_espcn_epoch_2_100.pt"))


@pytest.mark.data
def test_yjn870_fsrcnn_reproduces_its_set5_x2(data_root: Path) -> None:
    """Published 37.12 dB (Set5 x2, Y); the reference deconv geometry is what makes it."""
    from sisr.evaluate.runner import evaluate

    model = load_detected(_peer("yjn870_fsrcnn_x2.pth")).model
    result = evaluate(model, data_root / "benchmarks" / "Set5", 2, ssim=False)
    assert abs(result.psnr_y - 37.12) <= 0.05, result.psnr_y
