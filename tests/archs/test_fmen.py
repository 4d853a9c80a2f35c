"""FMEN against numbers from the authors' own code, and its re-parameterisation.

Reference numbers were produced in a scratch folder (never in this repository) by running
the authors' model files in fp32 on one CPU thread, in eval mode, on
``x = torch.rand(1, 3, 20, 24, generator=Generator().manual_seed(1))`` fed as ``x * 255``
(the EDSR framework they train in: rgb_range 255, no mean shift), outputs divided by 255:

* NJU-Jet/FMEN at commit a1def169d0e2c99ecebdb1b08bf567f329c3a566: ``train_fmen.py``
  ``TRAIN_FMEN(Args())`` (training form) and ``test_fmen.py`` ``TEST_FMEN(Args())`` (deploy
  form), ``Args``: 50 features, 4 down blocks, up blocks [2, 1, 1, 1, 1], mid 16, expand
  ratios 2, x4; and its published ``test_weights.pt``;
* ofsoundof/NTIRE2022_ESR at commit e95ba4a4916bb13d6348f7ee172827e2452e8a31:
  ``models/team03_fmen.py`` ``FMEN()`` with ``model_zoo/team03_fmen.pth``.

Seeded weights (:func:`seeded`): ``g = Generator().manual_seed(0)``; every tensor of the
authors' ``model.state_dict()`` in its order: ``0.05 * torch.randn(shape, generator=g)``,
except batch-norm ``running_var``: ``1 + 0.05 * torch.randn(...)`` (a variance must be
positive), integer buffers kept. sisr's state dicts have the same keys in the same order in
both forms. Recorded: shape, mean and the values at the 16 flat positions
``torch.randint(0, numel, (16,), generator=Generator().manual_seed(2))``; sisr matches each
within 2.4e-6 (6e-4 / 255). Running the authors' ``reparameterize.py`` (on the CPU) on the
seeded training weights gives tensors within 1.2e-7 of :meth:`FMEN.reparameterize`'s.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sisr.archs import DETECTORS, PRESETS
from sisr.archs._detect import Match, Miss
from sisr.archs.fmen import FMEN, detect, fuse_rrrb, pad_with
from sisr.errors import ConfigError
from sisr.hub.load import load_detected
from tests.archs import reference as ref

# autouse: the reference numbers were recorded on one CPU thread
one_thread = ref.one_thread

SEEDED = {
    False: (  # training form (TRAIN_FMEN)
        0.01249305,
        [
            0.19928241, 0.18201709, -0.11324115, 0.16870618, -0.00596780, 0.05010466,
            0.01603768, 0.16385359, -0.18224362, 0.09515014, 0.00974996, 0.18169998,
            -0.01231020, 0.18278135, 0.21034221, -0.18556598,
        ],
    ),
    True: (  # deploy form (TEST_FMEN)
        0.00619536,
        [
            0.02441642, 0.02689578, -0.21136670, 0.00199771, -0.00687636, 0.13229100,
            -0.16884702, 0.17870037, 0.25945595, -0.21472201, -0.02913400, 0.06415061,
            0.09792034, 0.17299731, -0.05490737, 0.07016014,
        ],
    ),
}  # fmt: skip

# Published deploy-form files (not in the peer folder yet: these tests skip), the layout
# sisr detects, reference mean and values, and Set5 x4 Y-PSNR measured with sisr.
FILES = {
    # NJU-Jet/FMEN test_weights.pt
    "fmen_test_weights.pt": (
        "deploy",
        0.49679846,
        [
            -0.21093407, 1.04153788, 0.25810421, 0.28528967, 0.15365750, 0.07314622,
            -0.18230714, 0.57751340, 0.58447945, 0.39184043, 1.45361805, 1.02563536,
            0.18545344, 0.40268877, -0.14592621, 0.54304141,
        ],
        32.1202,
    ),
    # ofsoundof/NTIRE2022_ESR model_zoo/team03_fmen.pth (basic_blocks / hfabs names)
    "ntire2022_team03_fmen.pth": (
        "ntire2022-deploy",
        0.46376739,
        [
            -0.18483786, 1.41015267, 0.20333883, 0.36932015, 0.14224173, 0.05432314,
            -0.21203902, 0.11440340, 0.52459770, 0.39003772, 1.45581245, 0.96501136,
            0.19165215, -0.04601632, -1.41777086, 0.25045788,
        ],
        32.0330,
    ),
}  # fmt: skip


def _assert_reference(y: torch.Tensor, mean: float, values: list[float]) -> None:
    ref.check_flat(y, (1, 3, 80, 96), mean, values)


@pytest.mark.parametrize("deploy", [False, True], ids=["train", "deploy"])
def test_seeded_weights_match_the_authors_code(deploy: bool) -> None:
    model = PRESETS["fmen"](scale=4, deploy=deploy)
    model.load_state_dict(ref.seeded(model))
    mean, values = SEEDED[deploy]
    with torch.no_grad():
        _assert_reference(model.eval()(ref.noise_input()), mean, values)


def test_reparameterize_keeps_the_authors_output() -> None:
    """The fused network still gives TRAIN_FMEN's numbers, and rebuilds from hparams."""
    model = PRESETS["fmen"](scale=4)
    model.load_state_dict(ref.seeded(model))
    model.eval().reparameterize()
    assert model.hparams["deploy"] is True
    mean, values = SEEDED[False]
    with torch.no_grad():
        _assert_reference(model(ref.noise_input()), mean, values)
    rebuilt = FMEN(**model.hparams)
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_training_branches_equal_the_fused_conv() -> None:
    """Training mode runs the branches (padding with the expand bias); eval the fused conv."""
    torch.manual_seed(0)
    model = FMEN(scale=2, num_features=8, mid_features=6, warmup_mid_features=4, up_blocks=[1, 1])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_(0, 0.1)  # type: ignore[union-attr]
        bn.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    x = torch.rand(1, 3, 9, 11)
    model.eval()
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():  # branches on, running statistics kept
            if not isinstance(m, torch.nn.BatchNorm2d):
                m.training = True
        branches = model(x)
    torch.testing.assert_close(branches, fused, atol=1e-4, rtol=1e-5)


def test_fuse_rrrb_matches_the_branches_on_borders() -> None:
    g = torch.Generator().manual_seed(4)
    w0, b0 = torch.randn(6, 3, 1, 1, generator=g), torch.randn(6, generator=g)
    w1, b1 = torch.randn(6, 6, 3, 3, generator=g), torch.randn(6, generator=g)
    w2, b2 = torch.randn(3, 6, 1, 1, generator=g), torch.randn(3, generator=g)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float32)
    out = torch.nn.functional.conv2d(x, w0, b0)
    out = torch.nn.functional.conv2d(pad_with(out, b0), w1, b1) + out
    ref = torch.nn.functional.conv2d(out, w2, b2) + x
    w, b = fuse_rrrb(w0, b0, w1, b1, w2, b2)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, w, b, padding=1), ref)


def test_training_step_updates_and_batch_norms_learn() -> None:
    model = FMEN(scale=2, num_features=8, mid_features=6, warmup_mid_features=4, up_blocks=[1, 1])
    model.train()
    y = model(torch.rand(2, 3, 8, 8))
    y.mean().backward()
    assert model.warmup[1].bn1.weight.grad is not None
    assert model.ERBs[0].conv1.fea_conv.weight.grad is not None
    assert int(model.warmup[1].bn1.num_batches_tracked) == 1


@pytest.mark.parametrize("name", sorted(FILES))
def test_published_files_match_the_authors_code(name: str) -> None:
    layout, mean, values, _ = FILES[name]
    found = load_detected(ref.peer(name))
    assert found.match.arch == "fmen" and found.match.layout == layout
    assert found.model.hparams["up_blocks"] == [2, 1, 1, 1, 1]
    with torch.no_grad():
        _assert_reference(found.model(ref.noise_input()), mean, values)


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(FILES))
def test_published_files_set5_x4(name: str, data_root: Path) -> None:
    ref.check_set5(load_detected(ref.peer(name)).model, data_root, 4, FILES[name][3])


# ----------------------------------------------------------------------------- detection


def _small(**kw: object) -> FMEN:
    base: dict[str, object] = {
        "num_features": 8,
        "mid_features": 6,
        "warmup_mid_features": 4,
        "up_blocks": [2, 0, 1],
    }
    base.update(kw)
    return FMEN(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("deploy", [False, True])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_detect_reads_every_hparam(deploy: bool, scale: int) -> None:
    model = _small(scale=scale, deploy=deploy, backbone_expand=3, attention_expand=2)
    found = detect(model.state_dict())
    assert isinstance(found, Match) and found.scale == scale
    assert found.layout == ("deploy" if deploy else "train")
    read = {"num_features", "mid_features", "warmup_mid_features", "up_blocks", "deploy"}
    if not deploy:  # the fused form keeps no expansion ratios
        read |= {"backbone_expand", "attention_expand"}
    assert set(found.hparams) == read
    assert all(model.hparams[k] == v for k, v in found.hparams.items())
    FMEN(scale=scale, **found.hparams).load_state_dict(found.state_dict, strict=True)


def test_detect_ntire2022_names_and_missing_counters() -> None:
    sd = _small(deploy=True).state_dict()
    renamed = {
        k.replace("ERBs.", "basic_blocks.").replace("HFABs.", "hfabs."): v for k, v in sd.items()
    }
    found = detect(renamed)
    assert isinstance(found, Match) and found.layout == "ntire2022-deploy"
    assert set(found.state_dict) == set(sd)
    train = {k: v for k, v in _small().state_dict().items() if "num_batches" not in k}
    found = detect(train)
    assert isinstance(found, Match)
    _small(scale=found.scale, **found.hparams).load_state_dict(found.state_dict, strict=True)


def test_detect_misses() -> None:
    sd = dict(_small().state_dict())
    sd["tail.0.weight"] = torch.zeros(7, 8, 3, 3)
    miss = detect(sd)
    assert isinstance(miss, Miss) and "tail.0.weight (7, 8, 3, 3)" in miss.reason
    sd = {k: v for k, v in _small().state_dict().items() if ".bn" not in k}
    assert isinstance(detect(sd), Miss)
    assert detect({"head.weight": torch.zeros(1)}) is None
    assert DETECTORS["fmen"] is detect


def test_bad_hparams_are_refused() -> None:
    with pytest.raises(ConfigError, match="up_blocks"):
        FMEN(up_blocks=[])
    with pytest.raises(ConfigError, match="num_features"):
        FMEN(num_features=0)


def test_receptive_radius_is_exact() -> None:
    model = _small(scale=2, deploy=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel() if p.dim() > 1 else 20))
    r = model.info().receptive_radius
    assert r == 2 + (2 + 4) + (2 + 0) + (2 + 2) + 2 * 2 + 2
    n = 2 * r + 9
    assert ref.influence_reach(model.eval(), n, [n // 2], scale=2, threshold=1e-7) == r
