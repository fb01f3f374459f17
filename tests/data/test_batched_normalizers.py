"""Batched stain normalizers (B×C×H×W, CPU or GPU) against the per-tile ones: same fit, within one grey level."""

from __future__ import annotations

import pytest
import torch

from src.data.normalizers import Macenko, Reinhard, from_fit, read_image
from src.data.normalizers.color import LEVEL_SCALE, LabSpace, rgb_to_lab
from tests.conf_options import conf_normalizer
from tests.data.test_normalizers import NORMALIZERS, TARGET, TILES, two_stain_image

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def generated_tiles(size: int = 64) -> torch.Tensor:
    """Synthetic H&E tiles (two stains, background), a pale one and a blank one: what a fresh clone tests."""
    tiles = [two_stain_image(size, seed)[0] for seed in range(6)]
    pale = (255 - (255 - tiles[0].int()) // 4).to(torch.uint8)  # faint staining, as a background-rich tile
    blank = torch.full((3, size, size), 243, dtype=torch.uint8)
    return torch.stack([*tiles, pale, blank])


@pytest.fixture(scope="module")
def real_tiles() -> dict[str, torch.Tensor]:
    """Every real RGB(A) tile of ../shared/data/tiles of at least 128 px, cropped to 128 px."""
    if not TARGET.exists():
        pytest.skip(f"real H&E tiles not found under {TILES}")
    tiles = {}
    for path in sorted(TILES.glob("*.png")):
        image = read_image(path)
        if min(image.shape[1:]) >= 128:
            tiles[path.name] = image[:, :128, :128].contiguous()
    return tiles


def fitted(option: str, **kwargs):
    """The normalizer of ``conf/normalizer/<option>.yaml`` (``kwargs`` replacing its keys), fitted on a tile."""
    return conf_normalizer(option, **kwargs).fit([two_stain_image(96, seed=11)[0]])


def grey_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.int() - b.int()).abs()


@pytest.mark.parametrize("option", NORMALIZERS)
def test_batched_equals_per_tile_on_generated_tiles(option: str) -> None:
    normalizer, batch = fitted(option), generated_tiles()
    per_tile = torch.stack([normalizer(tile) for tile in batch])
    out = normalizer.normalize(batch)
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    assert grey_levels(out, per_tile).max() <= 1
    # Macenko leaves an unstained tile as it is
    assert torch.equal(out[-1], batch[-1]) or isinstance(normalizer, Reinhard)


def test_macenko_batched_equals_per_tile_on_every_real_tile(real_tiles) -> None:
    normalizer = Macenko().fit([read_image(TARGET)])
    for name, tile in real_tiles.items():
        assert grey_levels(normalizer.normalize(tile[None])[0], normalizer(tile)).max() <= 1, name


def test_the_lab_levels_are_opencvs_float_conversion() -> None:
    """``LabSpace.lab`` against ``cv2.cvtColor(image / 255, COLOR_RGB2LAB)`` on 2^21 random colours and the extremes.

    OpenCV interpolates in a 33³ integer grid; the table gives its result to one output step (100/2^14 in L*,
    1/64 in a* and b*) on every colour, identically on ≥ 99.5 % of them (the rest: a grid node OpenCV's
    software float rounds the other way).
    """
    colours = torch.randint(0, 256, (1, 3, 1 << 21), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    extremes = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 254]])
    colours = torch.cat([colours, extremes.T.to(torch.uint8)[None]], dim=-1)
    ours = LabSpace().lab(colours)[0].T
    theirs = rgb_to_lab(colours[0].T.float() / 255)
    steps = torch.tensor(LEVEL_SCALE)
    off = ((ours - theirs).abs() / steps).round()
    assert off.max() <= 1
    assert (off == 0).all(dim=1).float().mean() >= 0.995


def test_reinhard_batched_equals_per_tile_on_every_real_tile(real_tiles) -> None:
    """Tissue, background, pen and near-blank tiles: within one grey level of the per-tile (OpenCV) result."""
    normalizer = Reinhard().fit([read_image(TARGET)])
    batch = torch.stack(list(real_tiles.values()))
    out = normalizer.normalize(batch)
    for (name, tile), image in zip(real_tiles.items(), out, strict=True):
        assert grey_levels(image, normalizer(tile)).max() <= 1, name


@pytest.mark.parametrize("option", NORMALIZERS)
def test_the_saved_fit_rebuilds_the_same_batched_normalizer(option: str) -> None:
    normalizer, batch = fitted(option), generated_tiles()
    rebuilt = from_fit(normalizer.get_fit())
    assert torch.equal(rebuilt.normalize(batch), normalizer.normalize(batch))


@pytest.mark.parametrize("option", NORMALIZERS)
def test_batched_stain_augmentation_perturbs_each_tile_reproducibly(option: str) -> None:
    normalizer = fitted(option)
    batch = generated_tiles()[:1].expand(4, -1, -1, -1).contiguous()  # the same tile four times
    plain = normalizer.normalize(batch)
    first = normalizer.normalize(batch, augment=True, generator=torch.Generator().manual_seed(5))
    again = normalizer.normalize(batch, augment=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert all(not torch.equal(first[i], plain[i]) for i in range(4))
    assert all(not torch.equal(first[i], first[j]) for i in range(4) for j in range(i))  # one target per tile
    still = fitted(option, augment_sd=0.0)
    assert torch.equal(still.normalize(batch, augment=True), plain)


@pytest.mark.parametrize("option", NORMALIZERS)
def test_one_tile_stain_augmentation_draws_what_a_batch_of_one_draws(option: str) -> None:
    normalizer, tile = fitted(option), generated_tiles()[0]
    torch.manual_seed(3)
    per_tile = normalizer(tile, augment=True)
    torch.manual_seed(3)
    batched = normalizer.normalize(tile[None], augment=True)[0]
    assert grey_levels(per_tile, batched).max() <= 1


def test_normalize_rejects_what_is_not_a_uint8_batch() -> None:
    normalizer = fitted("reinhard")
    with pytest.raises(TypeError, match=r"uint8 \(B, C, H, W\)"):
        normalizer.normalize(generated_tiles()[0])
    with pytest.raises(TypeError, match="uint8"):
        normalizer.normalize(generated_tiles().float())
    with pytest.raises(RuntimeError, match="not fitted"):
        Macenko().normalize(generated_tiles())


@CUDA
@pytest.mark.parametrize("option", NORMALIZERS)
def test_cuda_gives_the_cpu_result(option: str) -> None:
    normalizer, batch = fitted(option), generated_tiles()
    on_gpu = normalizer.normalize(batch.cuda(), augment=True, generator=torch.Generator().manual_seed(1))
    on_cpu = normalizer.normalize(batch, augment=True, generator=torch.Generator().manual_seed(1))
    assert on_gpu.device.type == "cuda" and grey_levels(on_gpu.cpu(), on_cpu).max() <= 1
